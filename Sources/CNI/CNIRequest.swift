import CommandTree
import Foundation
import Loader

/// One invocation of a CNI plugin as the spec (1.0.0) has a runtime make it: the
/// command and the container in the environment, the network configuration (with
/// the previous plugin's result, chained) on standard input.
public struct CNIRequest {
    public enum Command: String, Sendable {
        case add = "ADD", delete = "DEL", check = "CHECK", version = "VERSION"
    }

    public let command: Command
    public let containerID: String
    /// The container's network namespace (a path); DEL may come without one.
    public let netns: String?
    /// The interface inside the container (`CNI_IFNAME`).
    public let interfaceName: String?
    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;` (kubelet's runtime passes the pod's name in them).
    public let arguments: [String: String]
    public let configuration: CNIConfiguration

    /// Reads the spec's variables from `environment` and the configuration from `standardInput`.
    public init(environment: [String: String], standardInput: [UInt8]) throws(CNIError) {
        guard let name = environment["CNI_COMMAND"], !name.isEmpty else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND is not set", details: "netfence-cni is a CNI plugin: a container runtime runs it "
                           + "with CNI_COMMAND (ADD, DEL, CHECK or VERSION) and the network configuration on standard input")
        }
        guard let command = Command(rawValue: name) else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND '\(TerminalText.escaped(name))' is not one of ADD, DEL, CHECK, VERSION")
        }
        self.command = command
        configuration = try CNIConfiguration(decoding: standardInput)
        containerID = environment["CNI_CONTAINERID"] ?? ""
        netns = environment["CNI_NETNS"].flatMap { $0.isEmpty ? nil : $0 }
        interfaceName = environment["CNI_IFNAME"].flatMap { $0.isEmpty ? nil : $0 }
        arguments = try Self.parseArguments(environment["CNI_ARGS"] ?? "")
        guard command != .version else { return }
        guard !containerID.isEmpty else { throw CNIError(.invalidEnvironment, "CNI_CONTAINERID is not set") }
        if command != .delete {
            guard netns != nil else { throw CNIError(.invalidEnvironment, "CNI_NETNS is not set") }
            guard interfaceName != nil else { throw CNIError(.invalidEnvironment, "CNI_IFNAME is not set") }
        }
    }

    /// `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;IgnoreUnknown=1`.
    static func parseArguments(_ text: String) throws(CNIError) -> [String: String] {
        var pairs: [String: String] = [:]
        for item in text.split(separator: ";") where !item.isEmpty {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw CNIError(.invalidEnvironment, "CNI_ARGS holds '\(TerminalText.escaped(String(item)))', not KEY=VALUE")
            }
            pairs[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        return pairs
    }
}

/// The network configuration netfence-cni reads: the spec's fields, the previous
/// plugin's result (its bytes kept as they came, to pass on) and netfence's own keys.
public struct CNIConfiguration {
    public let cniVersion: String
    public let name: String
    /// The previous plugin's result (nil: netfence-cni is not chained after an interface plugin).
    public let previousResult: PreviousResult?
    /// What a pod enforces in each direction while no object selects it (`"ingressDefault": "deny"` is strict mode).
    public let ingressDefault: PodDefault
    public let egressDefault: PodDefault
    /// The pin root `netfence loader init` used.
    public let bpffsRoot: String?
    /// How long to wait for another netfence command that changes the node.
    public let lockTimeout: Double

    /// Versions of the spec whose configuration and result this plugin reads and passes on.
    public static let supportedVersions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]

    /// A larger configuration is not a network configuration.
    public static let maximumBytes = 1 << 20

    /// What netfence-cni reads of the previous result; `bytes` is all of it, as it came.
    public struct PreviousResult {
        public struct Interface: Decodable {
            public var name: String?
            public var sandbox: String?
        }

        public let cniVersion: String?
        public let interfaces: [Interface]
        /// The result's JSON exactly as the runtime passed it: what ADD prints.
        public let bytes: ArraySlice<UInt8>
    }

    /// The keys read, typed: no untyped JSON tree (building and casting one cost the plugin
    /// a fifth of its time in the Swift runtime's protocol lookups).
    private struct Keys: Decodable {
        struct Result: Decodable {
            var cniVersion: String?
            var interfaces: [PreviousResult.Interface]?
        }

        var cniVersion: String?
        var name: String?
        var prevResult: Result?
        var ingressDefault: String?
        var egressDefault: String?
        var bpffsRoot: String?
        var lockTimeout: Double?
    }

    init(decoding bytes: [UInt8]) throws(CNIError) {
        guard bytes.count <= Self.maximumBytes else {
            throw CNIError(.decodingFailure, "the network configuration on standard input is larger than \(Self.maximumBytes >> 20) MiB")
        }
        guard let members = JSONObjectMembers(bytes) else {
            throw CNIError(.decodingFailure, "the network configuration on standard input is not valid JSON (one object, each member named once)")
        }
        let keys: Keys
        do {
            keys = try JSONDecoder().decode(Keys.self, from: Data(bytes))
        } catch DecodingError.typeMismatch(_, let context) {
            throw CNIError(.invalidConfiguration, "'\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch DecodingError.dataCorrupted {
            throw CNIError(.decodingFailure, "the network configuration on standard input is not valid JSON")
        } catch {
            throw CNIError(.invalidConfiguration, "the network configuration does not decode")
        }
        guard let version = keys.cniVersion, !version.isEmpty else {
            throw CNIError(.invalidConfiguration, "the network configuration has no cniVersion")
        }
        guard Self.supportedVersions.contains(version) else {
            throw CNIError(.incompatibleVersion, "netfence-cni does not support CNI version \(TerminalText.escaped(version))",
                           details: "supported: \(Self.supportedVersions.joined(separator: ", "))")
        }
        cniVersion = version
        name = keys.name ?? ""
        if let range = members["prevResult"] {
            guard bytes[range.lowerBound] == UInt8(ascii: "{"), let result = keys.prevResult else {
                throw CNIError(.invalidConfiguration, "'prevResult' must be an object")
            }
            previousResult = PreviousResult(cniVersion: result.cniVersion, interfaces: result.interfaces ?? [], bytes: bytes[range])
        } else {
            previousResult = nil
        }
        ingressDefault = try Self.podDefault(keys.ingressDefault, key: "ingressDefault")
        egressDefault = try Self.podDefault(keys.egressDefault, key: "egressDefault")
        bpffsRoot = keys.bpffsRoot
        if let seconds = keys.lockTimeout, !(seconds.isFinite && (0...600).contains(seconds)) {
            throw CNIError(.invalidConfiguration, "'lockTimeout' must be a number of seconds from 0 to 600")
        }
        lockTimeout = keys.lockTimeout ?? 30
    }

    private static func podDefault(_ value: String?, key: String) throws(CNIError) -> PodDefault {
        guard let value else { return .allow }
        guard let chosen = PodDefault(rawValue: value) else {
            throw CNIError(.invalidConfiguration, "'\(key)' must be \"allow\" or \"deny\", not \"\(TerminalText.escaped(value))\"")
        }
        return chosen
    }
}
