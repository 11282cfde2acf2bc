import BPFKit
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport
import Yams

/// A node whose pods are created the way a container runtime creates them: Debian's
/// `ptp` and `host-local` chained with `netfence-cni`, each plugin executed with the
/// CNI environment and stdin, inside a node namespace of the test's own.
final class CNINode: @unchecked Sendable {
    let root: TestPinRoot
    let node: NetworkNamespace
    let runtime: CNIRuntime
    let bin: TemporaryFolder
    let ipam: TemporaryFolder
    private let prefix: String
    /// Pods are added and deleted from several threads at once.
    private let lock = NSLock()
    private var namespaces: [String] = []
    private var servers: [ProbeServer] = []
    private var added: [String: [String: Any]] = [:]
    /// Each added pod's chain result, by name and sandbox.
    var results: [String: [String: Any]] { lock.withLock { added } }

    static let port: UInt16 = 8080

    /// `netfence` is netfence-cni's configuration beside `type`; `bridge` chains Debian's bridge plugin instead of ptp.
    init(netfence: [String: Any] = [:], bridge: Bool = false) throws {
        root = try TestPinRoot()
        prefix = UniqueNames.make("nfc")
        let nodeName = "\(prefix)-node"
        try IPRoute.run(["netns", "add", nodeName])
        namespaces.append(nodeName)
        node = try NetworkNamespace.named(nodeName)
        bin = try TemporaryFolder("nf-cni-bin")
        try FileManager.default.createSymbolicLink(atPath: "\(bin.path)/netfence-cni", withDestinationPath: NetfenceBinary.path)
        ipam = try TemporaryFolder("nf-cni-ipam")
        var plugin: [String: Any] = ["type": "netfence-cni", "bpffsRoot": root.path]
        plugin.merge(netfence) { $1 }
        let ipamConfiguration: [String: Any] = ["type": "host-local", "ranges": [[["subnet": "198.18.7.0/24"]]], "dataDir": ipam.path]
        let interfaces: [String: Any] = bridge
            ? ["type": "bridge", "bridge": "nfcni0", "isGateway": true, "ipMasq": false, "ipam": ipamConfiguration]
            : ["type": "ptp", "ipMasq": false, "ipam": ipamConfiguration]
        runtime = try CNIRuntime(networkName: "netfence-test", plugins: [interfaces, plugin], node: node,
                                 binFolders: [bin.path, CNIRuntime.debianPluginFolder])
        try cli(["loader", "init"])
    }

    deinit {
        servers.forEach { $0.stop() }
        _ = try? NetfenceBinary.run(["loader", "reset", "--bpffs-root", root.path])
        namespaces.reversed().forEach(IPRoute.deleteNamespace)
    }

    @discardableResult
    func cli(_ words: [String], input: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
        try runNetfence(words, root: root, input: input, sourceLocation: sourceLocation)
    }

    /// Creates the pod's namespace and runs the chain's ADD for shop/`pod`; returns its IPv4 address.
    @discardableResult
    func add(_ pod: String, sandbox: String = "") throws -> String {
        let name = "\(prefix)-\(pod)\(sandbox)"
        try IPRoute.run(["netns", "add", name])
        lock.withLock { namespaces.append(name) }
        try IPRoute.run(["-n", name, "link", "set", "lo", "up"])
        let outcome = try runtime.add(containerID: "\(prefix)\(pod)\(sandbox)", netns: "\(NetworkNamespace.namedFolder)/\(name)",
                                      arguments: CNIRuntime.podArguments(namespace: "shop", name: pod))
        lock.withLock { added[pod + sandbox] = outcome.result }
        return try Self.address(outcome.result)
    }

    func check(_ pod: String, sandbox: String = "") throws {
        try runtime.check(containerID: "\(prefix)\(pod)\(sandbox)", netns: "\(NetworkNamespace.namedFolder)/\(prefix)-\(pod)\(sandbox)",
                          arguments: CNIRuntime.podArguments(namespace: "shop", name: pod), result: results[pod + sandbox] ?? [:])
    }

    func delete(_ pod: String, sandbox: String = "", netnsGone: Bool = false) throws {
        try runtime.delete(containerID: "\(prefix)\(pod)\(sandbox)", netns: netnsGone ? nil : "\(NetworkNamespace.namedFolder)/\(prefix)-\(pod)\(sandbox)",
                           arguments: CNIRuntime.podArguments(namespace: "shop", name: pod), result: results[pod + sandbox])
    }

    /// Deletes the pod's namespace (its veth pair goes with it), as a runtime does when a sandbox dies.
    func removeNamespace(_ pod: String) {
        IPRoute.deleteNamespace("\(prefix)-\(pod)")
    }

    func serve(_ pod: String) throws {
        servers.append(try ProbeServer(in: try NetworkNamespace.named("\(prefix)-\(pod)"), port: Self.port))
    }

    func reaches(_ from: String, _ address: String, _ probe: Probe = .tcp) throws -> Bool {
        try NetworkNamespace.named("\(prefix)-\(from)").probe(probe, to: address, port: Self.port)
    }

    /// The pod's IPv4 address in a chain result.
    static func address(_ result: [String: Any]) throws -> String {
        let ips = result["ips"] as? [[String: Any]] ?? []
        guard let cidr = ips.compactMap({ $0["address"] as? String }).first(where: { $0.contains(".") }) else {
            throw IPRoute.Failure(command: "read the pod's address", output: "\(result)")
        }
        return String(cidr.prefix { $0 != "/" })
    }

    /// The host veth in a chain result.
    static func hostInterface(_ result: [String: Any]) -> String? {
        (result["interfaces"] as? [[String: Any]])?.first { ($0["sandbox"] as? String ?? "").isEmpty }?["name"] as? String
    }

    func status() throws -> [String: Any] { try jsonObject(cli(["loader", "status", "-o", "json"]).standardOutput) }
}

@Suite(.serialized) struct CNIPluginTests {
    static func available() -> Bool {
        Privileges.require() && Privileges.tools(["\(CNIRuntime.debianPluginFolder)/ptp"], from: "containernetworking-plugins")
    }

    /// The controller wrote the PolicyEndpoint before the pod existed: at ADD it is in force,
    /// so the pod's very first connection to a peer it does not name is denied.
    @Test func anObjectAppliedBeforeADDDecidesThePodsFirstPacket() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        let allowed = try node.add("pod1"), other = try node.add("pod2")
        try node.serve("pod1")
        try node.serve("pod2")
        try node.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Egress"],
                                                              egress: rule("\(allowed)/32", ports: [("TCP", Int(CNINode.port), nil)])))
        try node.add("pod0")
        #expect(try !node.reaches("pod0", other), "the first connection attempt, to a peer the object does not name, is denied")
        #expect(try node.reaches("pod0", allowed), "the named peer is allowed")
        let applied = try node.cli(["loader", "status", "--pod", "shop/pod0", "--wait-applied", "--timeout", "0"])
        #expect(applied.standardOutput.hasPrefix("shop/pod0 is applied"), "\(applied.standardOutput)")
        #expect(try node.reaches("pod1", other), "pods nothing selects stay open")
    }

    /// Strict mode: a pod whose object has not arrived is closed from its first packet; once
    /// applied the named peer gets in; --wait-applied tells a waiting init container.
    @Test func aStrictPodIsClosedUntilItsObjectArrives() throws {
        guard Self.available() else { return }
        let node = try CNINode(netfence: ["ingressDefault": "deny"])
        let client = try node.add("pod1")
        let server = try node.add("pod0")
        try node.serve("pod0")
        #expect(try !node.reaches("pod1", server), "strict: no object yet, nothing gets in")

        let waiting = try NetfenceBinary.run(["loader", "status", "--pod", "shop/ghost", "--wait-applied", "--timeout", "0.3",
                                              "--bpffs-root", node.root.path])
        #expect(waiting.status == 1 && waiting.standardError.contains("shop/ghost was not applied within 0.3 s: not attached on this node"),
                "\(waiting.standardError)")
        let checked = try NetfenceBinary.run(["loader", "status", "--pod", "shop/ghost", "--check", "--bpffs-root", node.root.path])
        #expect(checked.status == 1 && checked.standardError.contains("shop/ghost is not applied: not attached on this node"), "\(checked.standardError)")

        try node.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                              ingress: rule("\(client)/32", ports: [("TCP", Int(CNINode.port), nil)])))
        let applied = try jsonObject(node.cli(["loader", "status", "--pod", "shop/pod0", "--wait-applied", "-o", "json"]).standardOutput)
        #expect(applied["applied"] as? Bool == true && applied["objects"] as? [String] == ["PolicyEndpoint shop/web"], "\(applied)")
        #expect(try node.reaches("pod1", server), "the named peer gets in once the object is applied")
    }

    /// --wait-applied started before the pod exists returns once ADD attached it.
    @Test func waitAppliedReturnsOnceTheRuntimeAddedThePod() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        try node.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"]))
        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        waiter.arguments = ["loader", "status", "--pod", "shop/pod0", "--wait-applied", "--timeout", "30", "--bpffs-root", node.root.path]
        waiter.standardOutput = FileHandle.nullDevice
        try waiter.run()
        usleep(300_000)
        #expect(waiter.isRunning, "nothing is attached yet: it waits")
        try node.add("pod0")
        let deadline = Date().addingTimeInterval(10)
        while waiter.isRunning, Date() < deadline { usleep(20_000) }
        #expect(!waiter.isRunning, "returns once the pod is attached with its object")
        waiter.stop(signal: SIGKILL, within: 1)
        #expect(waiter.terminationStatus == 0)
    }

    /// The sandbox died first: DEL without a namespace (and a second DEL) succeeds and
    /// leaves no registry entry, datapath record or filter.
    @Test func delOfADeletedNamespaceSucceedsTwiceAndLeavesNothing() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        try node.add("pod0")
        let kept = try node.add("pod1")
        node.removeNamespace("pod0")
        try node.delete("pod0", netnsGone: true)
        try node.delete("pod0", netnsGone: true)
        let status = try node.status()
        let pods = status["pods"] as? [[String: Any]] ?? []
        #expect(pods.map { $0["pod"] as? String } == ["shop/pod1"], "only the living pod is registered: \(pods)")
        #expect(status["consistent"] as? Bool == true, "no drift, no stray filter: \(status["drift"] ?? "")")
        let records = try jsonArray(node.cli(["ebpf", "maps", "dump", "\(node.root.path)/maps/pods", "-o", "json"]).standardOutput)
        #expect(records.count == 1, "one datapath record left: \(records)")
        #expect(!kept.isEmpty)
        try node.delete("pod1")
        try node.delete("pod1")
        #expect((try node.status()["pods"] as? [[String: Any]] ?? []).isEmpty)
    }

    /// A StatefulSet pod comes back under the same name on a new sandbox before the old
    /// sandbox's DEL: that DEL leaves the new attachment alone.
    @Test func aLateDELOfAnOldSandboxLeavesTheNewOne() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        try node.add("pod0", sandbox: "a")
        try node.add("pod0", sandbox: "b")
        try node.delete("pod0", sandbox: "a")
        let pods = try node.status()["pods"] as? [[String: Any]] ?? []
        let interface = CNINode.hostInterface(node.results["pod0b"] ?? [:])
        #expect(pods.count == 1 && pods.first?["interface"] as? String == interface, "\(pods)")
        try node.check("pod0", sandbox: "b")
    }

    /// Chained after bridge: the result lists the bridge and the pod's veth outside the sandbox;
    /// netfence attaches to the veth (its driver says so), and policy holds between pods on the bridge.
    @Test func afterTheBridgePluginThePodsVethIsAttachedNotTheBridge() throws {
        guard Self.available() else { return }
        let node = try CNINode(bridge: true)
        let client = try node.add("pod1")
        try node.add("pod2")
        try node.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                              ingress: rule("\(client)/32", ports: [("TCP", Int(CNINode.port), nil)])))
        let server = try node.add("pod0")
        try node.serve("pod0")
        let result = try #require(node.results["pod0"])
        let host = (result["interfaces"] as? [[String: Any]] ?? []).filter { ($0["sandbox"] as? String ?? "").isEmpty }.compactMap { $0["name"] as? String }
        #expect(host.count == 2 && host.contains("nfcni0"), "bridge and veth outside the sandbox: \(host)")
        let pods = try node.status()["pods"] as? [[String: Any]] ?? []
        let attached = pods.first { $0["pod"] as? String == "shop/pod0" }?["interface"] as? String
        #expect(attached != nil && attached != "nfcni0" && host.contains(attached ?? ""), "\(pods)")
        #expect(try node.reaches("pod1", server), "the named peer gets in across the bridge")
        #expect(try !node.reaches("pod2", server), "another pod on the bridge does not")
        try node.check("pod0")
        try node.delete("pod0")
        #expect((try node.status()["pods"] as? [[String: Any]] ?? []).count == 2)
    }

    /// CHECK passes while the pod is enforced and fails with the spec's error JSON once a filter is gone.
    @Test func checkFailsWithTheSpecsErrorOnceAFilterIsGone() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        try node.add("pod0")
        let result = try #require(node.results["pod0"])
        try node.check("pod0")
        let interface = try #require(CNINode.hostInterface(result))
        let removed = try ChildProcess.run("/usr/sbin/tc", ["-n", node.node.name, "filter", "del", "dev", interface, "ingress"])
        #expect(removed.status == 0, "\(removed.output)")
        do {
            try node.check("pod0")
            Issue.record("CHECK passed without the ingress filter")
        } catch let failure as CNIRuntime.Failure {
            let error = try jsonObject(failure.output)
            #expect(failure.plugin == "netfence-cni" && error["code"] as? Int == 100, "\(failure)")
            #expect((error["details"] as? String ?? "").contains("has no netfence"), "\(error)")
        }
    }

    /// Twenty pods added at once, then deleted at once: every one registered, then none;
    /// no drift, no stray filter (the loader's lock serializes the plugins).
    @Test func twentyPodsAddedAndDeletedConcurrentlyLeaveAConsistentRegistry() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        let names = (0..<20).map { "pod\($0)" }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: names.count) { index in
            do { try node.add(names[index]) } catch { failures.append("\(names[index]): \(error)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        var status = try node.status()
        #expect(Set((status["pods"] as? [[String: Any]] ?? []).compactMap { $0["pod"] as? String }) == Set(names.map { "shop/\($0)" }))
        #expect(status["consistent"] as? Bool == true, "\(status["drift"] ?? "")")
        DispatchQueue.concurrentPerform(iterations: names.count) { index in
            do { try node.delete(names[index]) } catch { failures.append("\(names[index]): \(error)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        status = try node.status()
        #expect((status["pods"] as? [[String: Any]] ?? []).isEmpty && status["consistent"] as? Bool == true, "\(status)")
    }

    /// What the runtime gets when something is wrong: the spec's error JSON on stdout, a
    /// non-zero exit, one line on stderr; VERSION lists what the plugin reads.
    @Test func errorsAreTheSpecsJSON() throws {
        guard Self.available() else { return }
        let node = try CNINode()
        let plugin = "\(node.bin.path)/netfence-cni"
        func run(_ command: String, _ configuration: String, arguments: String = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod0") throws -> ChildProcess.Result {
            let file = "\(node.ipam.path)/conf.json"
            try configuration.write(toFile: file, atomically: true, encoding: .utf8)
            var environment = ProcessInfo.processInfo.environment
            environment.merge(["CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0",
                               "CNI_ARGS": arguments, "CNI_PATH": node.bin.path]) { $1 }
            return try ChildProcess.run(plugin, [], output: .separate, environment: environment, input: file, timeout: 60)
        }
        let version = try run("VERSION", #"{"cniVersion":"0.4.0"}"#)
        #expect(version.status == 0)
        #expect(try jsonObject(version.output)["supportedVersions"] as? [String] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
        let previous = #""prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"vethx"},{"name":"eth0","sandbox":"/run/netns/none"}],"ips":[]}"#
        let cases: [(String, String, String, Int, String)] = [
            ("ADD", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni"}"#, "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod0", 7, "no prevResult"),
            ("ADD", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni",\#(previous)}"#, "IgnoreUnknown=1", 4, "names no pod"),
            ("ADD", #"{"cniVersion":"9.9.9","name":"n","type":"netfence-cni"}"#, "", 1, "does not support CNI version 9.9.9"),
            ("ADD", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni","ingressDefault":"maybe",\#(previous)}"#,
             "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod0", 7, #"'ingressDefault' must be "allow" or "deny""#),
            ("ADD", "{\"cniVersion\":\"1.0.0\",\u{1b}[31m", "", 6, "not valid JSON"),
            ("ADD", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni","bpffsRoot":"/sys/fs/bpf/netfence-none",\#(previous)}"#,
             "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod0", 11, "netfence is not loaded under /sys/fs/bpf/netfence-none"),
            ("ADD", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni","bpffsRoot":"\#(node.root.path)",\#(previous)}"#,
             "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod0", 101, "vethx"),
        ]
        for (command, configuration, arguments, code, message) in cases {
            let result = try run(command, configuration, arguments: arguments)
            #expect(result.status != 0, "\(configuration)")
            let error = try jsonObject(result.output)
            #expect(error["code"] as? Int == code && (error["msg"] as? String ?? "").contains(message) || (error["details"] as? String ?? "").contains(message),
                    "\(configuration): \(result.output)")
            #expect(error["cniVersion"] is String)
            #expect(result.errorOutput.split(separator: "\n").count == 1 && !result.errorOutput.contains("\u{1b}"), "\(result.errorOutput)")
        }
        let gone = try run("DEL", #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni","bpffsRoot":"/sys/fs/bpf/netfence-none"}"#)
        #expect(gone.status == 0 && gone.output.isEmpty, "DEL with netfence not loaded has nothing to remove: \(gone.output)")
    }
}

/// Failures collected from concurrent work.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var all: [String] { lock.withLock { items } }
}

/// docs/deploy.md is what an operator copies: its YAML parses into the objects it shows,
/// and its conflist, run through the real plugins, makes a strict pod.
@Suite struct DeployDocumentTests {
    static func blocks(_ language: String) throws -> [String] {
        let text = try String(contentsOf: Snapshot.packageRoot().appendingPathComponent("docs/deploy.md"), encoding: .utf8)
        return text.components(separatedBy: "```\(language)\n").dropFirst().map { $0.components(separatedBy: "\n```").first ?? "" }
    }

    @Test func theYAMLParsesIntoTheDaemonSetAndTheInitContainer() throws {
        let documents = try Self.blocks("yaml").map { try Yams.load(yaml: $0) }
        #expect(documents.count == 2)
        let daemonSet = try #require(documents.first as? [String: Any])
        #expect(daemonSet["kind"] as? String == "DaemonSet")
        let pod = ((daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any] ?? [:]
        #expect(pod["hostNetwork"] as? Bool == true)
        let containers = (pod["initContainers"] as? [[String: Any]] ?? []) + (pod["containers"] as? [[String: Any]] ?? [])
        #expect(containers.count == 3 && containers.allSatisfy { ($0["securityContext"] as? [String: Any])?["privileged"] as? Bool == true })
        let script = (containers.first?["args"] as? [String])?.first ?? ""
        #expect(script.contains("netfence loader init") && script.contains("mv -f"), "the plugin is installed by a rename: \(script)")
        let mounts = containers.flatMap { $0["volumeMounts"] as? [[String: Any]] ?? [] }.compactMap { $0["mountPath"] as? String }
        #expect(mounts.contains("/sys/fs/bpf") && mounts.contains("/host/opt/cni/bin") && mounts.contains("/run/netns"))
        let waiter = try #require(((documents.last as? [String: Any])?["initContainers"] as? [[String: Any]])?.first)
        #expect(((waiter["command"] as? [String])?.last ?? "").contains("loader status --pod \"$POD_NAMESPACE/$POD_NAME\" --wait-applied --timeout 60"))
    }

    @Test func theConflistRunsThroughTheRealPluginsIntoAStrictPod() throws {
        guard CNIPluginTests.available() else { return }
        let conflist = try jsonObject(try #require(Self.blocks("json").first))
        var plugins = try #require(conflist["plugins"] as? [[String: Any]])
        #expect(conflist["cniVersion"] as? String == "1.0.0" && plugins.map { $0["type"] as? String } == ["ptp", "netfence-cni"])
        // The test's own addresses, pin root and IPAM folder; masquerading off (no iptables in the test's node).
        plugins[1].removeValue(forKey: "bpffsRoot")
        let node = try CNINode(netfence: plugins[1])
        plugins[1]["bpffsRoot"] = node.root.path
        plugins[0]["ipMasq"] = false
        plugins[0]["ipam"] = ["type": "host-local", "ranges": [[["subnet": "198.18.9.0/24"]]], "dataDir": node.ipam.path]
        let runtime = try CNIRuntime(networkName: conflist["name"] as? String ?? "", plugins: plugins, node: node.node,
                                     binFolders: node.runtime.binFolders)
        try node.add("pod1")
        try IPRoute.run(["netns", "add", "\(node.node.name)-doc"])
        defer { IPRoute.deleteNamespace("\(node.node.name)-doc") }
        let outcome = try runtime.add(containerID: "doc", netns: "\(NetworkNamespace.namedFolder)/\(node.node.name)-doc",
                                      arguments: CNIRuntime.podArguments(namespace: "shop", name: "pod0"))
        let server = try CNINode.address(outcome.result)
        let probe = try ProbeServer(in: try NetworkNamespace.named("\(node.node.name)-doc"), port: CNINode.port)
        defer { probe.stop() }
        #expect(try !node.reaches("pod1", server), "ingressDefault deny: closed until its object arrives")
        let status = try jsonObject(node.cli(["loader", "status", "--pod", "shop/pod0", "-o", "json"]).standardOutput)
        #expect(status["applied"] as? Bool == true && status["attached"] as? Bool == true)
        try runtime.delete(containerID: "doc", netns: nil, arguments: CNIRuntime.podArguments(namespace: "shop", name: "pod0"), result: outcome.result)
    }
}
