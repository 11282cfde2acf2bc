import BPFKit
import CommandTree
import DatapathModel
import Foundation
import Loader

/// netfence as a chained CNI plugin (`netfence-cni`, after ptp or bridge): ADD
/// attaches the pod the previous plugin created through the loader, with every
/// stored object that selects it in force before ADD returns; DEL detaches it
/// (idempotent); CHECK verifies it is enforced; VERSION says what it reads.
public enum CNIPlugin {
    /// Runs one invocation: the result or the spec's error JSON goes to `output`,
    /// what a person should read to `log`; returns the exit status.
    /// Standard input is read (`readInput`) only once CNI_COMMAND says a runtime called.
    public static func run(environment: [String: String], readInput: () -> [UInt8],
                           output: ([UInt8]) -> Void, log: (String) -> Void) -> Int32 {
        var version = "1.0.0"
        do {
            if environment["CNI_COMMAND"] == "VERSION" {
                output(versionReport(requested: readInput()))
                return 0
            }
            let request = try CNIRequest(environment: environment, standardInput: environment["CNI_COMMAND"] == nil ? [] : readInput())
            version = request.configuration.cniVersion
            switch request.command {
            case .add: output(try add(request))
            case .delete: try delete(request)
            case .check: try check(request)
            case .version: break  // answered above
            }
            return 0
        } catch {
            log("netfence-cni: \(TerminalText.escaped(error.description))")
            output(error.json(cniVersion: version))
            return 1
        }
    }

    /// `{"cniVersion": …, "supportedVersions": […]}`, in the version asked for when this plugin has it.
    static func versionReport(requested: [UInt8]) -> [UInt8] {
        struct Asked: Decodable { var cniVersion: String? }
        struct Report: Encodable { var cniVersion: String, supportedVersions: [String] }
        let asked = (try? JSONDecoder().decode(Asked.self, from: Data(requested)))?.cniVersion
        let version = asked.flatMap { CNIConfiguration.supportedVersions.contains($0) ? $0 : nil } ?? "1.0.0"
        return CNIJSON.encode(Report(cniVersion: version, supportedVersions: CNIConfiguration.supportedVersions))
    }

    // MARK: commands

    static func add(_ request: CNIRequest) throws(CNIError) -> [UInt8] {
        let configuration = request.configuration
        guard let result = configuration.previousResult else {
            throw CNIError(.invalidConfiguration, "netfence-cni found no prevResult: it is a chained plugin",
                           details: "list it after an interface plugin (ptp, bridge) in the plugins of a conflist")
        }
        let pod = try podReference(request)
        let interface = try hostInterface(in: result)
        let netns = try currentNamespaceName()
        let defaults: [Direction: PodDefault] = [.ingress: configuration.ingressDefault, .egress: configuration.egressDefault]
        try withLoader(request, forChanges: true) { loader in
            _ = try loader.attach(pod, interface: interface, netns: netns, defaults: defaults)
        }
        // As it came: the runtime gave it in the configuration's version (libcni converts a cached result).
        return Array(result.bytes) + [UInt8(ascii: "\n")]
    }

    /// Nothing attached, netfence not loaded, the pod attached again by a newer
    /// sandbox: DEL succeeds without touching anything.
    static func delete(_ request: CNIRequest) throws(CNIError) {
        let interface = request.configuration.previousResult.flatMap { try? hostInterface(in: $0) }
        let pod = try? podReference(request)
        guard pod != nil || interface != nil else { return }  // nothing names the pod: nothing of it to find
        try withLoader(request, forChanges: true, absentIsDone: true) { loader in
            let pods = try loader.state.pods()
            let attached = pods.values.first { registration in
                if let pod { return registration.pod == pod }
                return registration.interface == interface
            }
            guard let attached else { return }
            // The pod's name is attached on another veth: a newer sandbox of it, which this DEL must leave alone.
            if let interface, attached.interface != interface { return }
            try loader.detach(attached.pod)
        }
    }

    static func check(_ request: CNIRequest) throws(CNIError) {
        guard let result = request.configuration.previousResult else {
            throw CNIError(.invalidConfiguration, "CHECK needs the prevResult of the plugin before netfence-cni")
        }
        let pod = try podReference(request)
        let interface = try hostInterface(in: result)
        try withLoader(request, forChanges: false) { loader in
            guard let attached = try loader.status(of: pod, waitingUpTo: request.configuration.lockTimeout) else {
                throw CNIError(.notEnforced, "pod \(pod) is not attached on this node")
            }
            guard attached.registration.interface == interface else {
                throw CNIError(.notEnforced, "pod \(pod) is attached on \(attached.registration.interface), not on \(interface)")
            }
            guard attached.problems.isEmpty else {
                throw CNIError(.notEnforced, "pod \(pod) is not enforced as stored", details: attached.problems.joined(separator: "; "))
            }
        }
    }

    // MARK: pieces

    /// The pod as kubelet's runtime names it in CNI_ARGS.
    static func podReference(_ request: CNIRequest) throws(CNIError) -> PodReference {
        guard let namespace = request.arguments["K8S_POD_NAMESPACE"], let name = request.arguments["K8S_POD_NAME"],
              !namespace.isEmpty, !name.isEmpty else {
            throw CNIError(.invalidEnvironment, "CNI_ARGS names no pod: netfence-cni needs K8S_POD_NAMESPACE and K8S_POD_NAME",
                           details: "kubelet's container runtime passes them; another runtime can add them to CNI_ARGS")
        }
        for (variable, value, kind) in [("K8S_POD_NAMESPACE", namespace, KubernetesName.Kind.namespace), ("K8S_POD_NAME", name, .object)]
        where !KubernetesName.admits(value, kind) {
            throw CNIError(.invalidEnvironment, "\(variable) '\(TerminalText.escaped(value))' is not \(KubernetesName.rule(kind))")
        }
        return PodReference(namespace: namespace, name: name)
    }

    /// The pod's host-side veth in the previous result: an interface outside the sandbox
    /// (with bridge, the one of those whose driver is veth).
    static func hostInterface(in result: CNIConfiguration.PreviousResult) throws(CNIError) -> String {
        let host = result.interfaces.filter { ($0.sandbox ?? "").isEmpty }.compactMap(\.name).filter { !$0.isEmpty }
        if host.count == 1 { return host[0] }
        let veths = host.filter { NetworkNamespace.driver(of: $0) == "veth" }
        if veths.count == 1 { return veths[0] }
        throw CNIError(.invalidConfiguration, host.isEmpty
            ? "the prevResult lists no host-side interface (one without a sandbox): netfence-cni attaches to the pod's host veth"
            : "the prevResult lists \(host.count) host-side interfaces and \(veths.count) of them are veths (\(host.joined(separator: ", "))); "
                + "netfence-cni needs exactly one: the pod's host veth")
    }

    /// The namespace the host veths live in: this plugin's (the runtime's), by its ip-netns name unless it is the host's.
    static func currentNamespaceName() throws(CNIError) -> String? {
        do {
            return try NetworkNamespace.currentName()
        } catch {
            throw CNIError(.invalidEnvironment, "netfence-cni runs in a network namespace it cannot name",
                           details: "run it in the host's namespace, or in one 'ip netns' knows: the loader finds the pods' veths there later")
        }
    }

    /// Runs `body` with the loader of the configured pin root; a loader that is not
    /// there is 'try again later' (the DaemonSet has not initialized it yet), or
    /// nothing to do when `absentIsDone`.
    static func withLoader(_ request: CNIRequest, forChanges: Bool, absentIsDone: Bool = false,
                           _ body: (Loader) throws -> Void) throws(CNIError) {
        let configuration = request.configuration
        do {
            let root = try PinRoot(configuration.bpffsRoot ?? PinRoot.standard.path)
            let loader = forChanges ? try Loader.openForChanges(root: root, waitingUpTo: configuration.lockTimeout) : try Loader(root: root)
            try body(loader)
        } catch let error as CNIError {
            throw error
        } catch LoaderError.notInitialized(let root) {
            if absentIsDone { return }
            throw CNIError(.tryAgainLater, "netfence is not loaded under \(root)",
                           details: "the netfence DaemonSet runs 'netfence loader init' at start; the runtime retries")
        } catch let error as LoaderError {
            if case .busy = error {
                throw CNIError(.tryAgainLater, "another netfence command held the node's lock for \(configuration.lockTimeout) s",
                               details: "raise lockTimeout in the plugin configuration if this repeats")
            }
            throw CNIError(.loaderFailure, error.description)
        } catch let error as PinRoot.Invalid {
            throw CNIError(.invalidConfiguration, "bpffsRoot: \(error.description)")
        } catch {
            throw CNIError(.loaderFailure, "\(error)")
        }
    }
}
