import BPFKit
import Foundation
import Glibc
import HostKit

/// Runs a chain of CNI plugins the way a container runtime does (libcni with a
/// conflist): each plugin executed with the spec's environment and its
/// configuration on standard input; on ADD each gets the result of the one before
/// as `prevResult`, DEL runs them in reverse with the chain's result. Plugins run
/// inside the node namespace `node` (entered with nsenter, which leaves /sys and
/// bpffs as they are), so the host veths they create are never the host's.
public final class CNIRuntime: @unchecked Sendable {
    /// Debian's containernetworking-plugins.
    public static let debianPluginFolder = "/usr/lib/cni"

    /// A plugin's failure: which one, its status and what it printed (the spec's error JSON on standard output).
    public struct Failure: Error, CustomStringConvertible {
        public let plugin: String
        public let command: String
        public let status: Int32
        public let output: String
        public var log = ""
        public var description: String { "CNI \(command) of \(plugin) exited \(status): \(output) \(log)" }
    }

    /// What one run of the chain returned, and how long each plugin took (seconds).
    public struct Outcome {
        public let result: [String: Any]
        public let seconds: [String: Double]
    }

    public let networkName: String
    public let cniVersion: String
    /// Each plugin's own configuration (`type` names its binary).
    public let plugins: [[String: Any]]
    public let node: NetworkNamespace
    /// CNI_PATH: where plugin binaries are found, in order.
    public let binFolders: [String]
    private let scratch: String

    public init(networkName: String, cniVersion: String = "1.0.0", plugins: [[String: Any]], node: NetworkNamespace, binFolders: [String]) throws {
        self.networkName = networkName
        self.cniVersion = cniVersion
        self.plugins = plugins
        self.node = node
        self.binFolders = binFolders
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nf-cni-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: scratch) }

    /// ADD through every plugin in order; the last result is the chain's.
    public func add(containerID: String, netns: String, interface: String = "eth0", arguments: [String: String]) throws -> Outcome {
        var previous: [String: Any]?
        var seconds: [String: Double] = [:]
        for plugin in plugins {
            let (result, took) = try invoke(plugin, "ADD", containerID: containerID, netns: netns, interface: interface,
                                            arguments: arguments, previous: previous)
            guard let result else { throw Failure(plugin: type(plugin), command: "ADD", status: 0, output: "printed no result") }
            previous = result
            seconds[type(plugin), default: 0] += took
        }
        return Outcome(result: previous ?? [:], seconds: seconds)
    }

    /// DEL through every plugin in reverse, each given the chain's ADD result (nil: none cached).
    public func delete(containerID: String, netns: String?, interface: String = "eth0", arguments: [String: String], result: [String: Any]?) throws {
        for plugin in plugins.reversed() {
            _ = try invoke(plugin, "DEL", containerID: containerID, netns: netns, interface: interface, arguments: arguments, previous: result)
        }
    }

    /// CHECK through every plugin in order, each given the chain's ADD result.
    public func check(containerID: String, netns: String, interface: String = "eth0", arguments: [String: String], result: [String: Any]) throws {
        for plugin in plugins {
            _ = try invoke(plugin, "CHECK", containerID: containerID, netns: netns, interface: interface, arguments: arguments, previous: result)
        }
    }

    /// `K8S_POD_NAMESPACE=…;K8S_POD_NAME=…` as kubelet's runtime passes them.
    public static func podArguments(namespace: String, name: String) -> [String: String] {
        ["IgnoreUnknown": "1", "K8S_POD_NAMESPACE": namespace, "K8S_POD_NAME": name]
    }

    private func type(_ plugin: [String: Any]) -> String { plugin["type"] as? String ?? "?" }

    private func invoke(_ plugin: [String: Any], _ command: String, containerID: String, netns: String?, interface: String,
                        arguments: [String: String], previous: [String: Any]?) throws -> ([String: Any]?, Double) {
        let name = type(plugin)
        guard let binary = binFolders.map({ "\($0)/\(name)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw Failure(plugin: name, command: command, status: 127, output: "no plugin \(name) in \(binFolders.joined(separator: ":"))")
        }
        var configuration = plugin
        configuration["cniVersion"] = cniVersion
        configuration["name"] = networkName
        if let previous { configuration["prevResult"] = previous }
        let file = "\(scratch)/\(UInt32.random(in: 0...UInt32.max)).json"
        try JSONSerialization.data(withJSONObject: configuration).write(to: URL(fileURLWithPath: file))
        defer { unlink(file) }
        var environment = ProcessInfo.processInfo.environment
        environment["CNI_COMMAND"] = command
        environment["CNI_CONTAINERID"] = containerID
        environment["CNI_NETNS"] = netns ?? ""
        environment["CNI_IFNAME"] = interface
        environment["CNI_PATH"] = binFolders.joined(separator: ":")
        environment["CNI_ARGS"] = arguments.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")
        let run = try ChildProcess.run("/usr/bin/nsenter", ["--net=\(node.path)", binary], output: .separate, environment: environment,
                                       input: file, timeout: 120)
        guard run.status == 0 else { throw Failure(plugin: name, command: command, status: run.status, output: run.output, log: run.errorOutput) }
        guard command == "ADD" else { return (nil, run.seconds) }
        guard let result = try? JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any] else {
            throw Failure(plugin: name, command: command, status: 0, output: "not a JSON result: \(run.output)")
        }
        return (result, run.seconds)
    }
}
