import BPFKit
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// Pods as network namespaces behind a node namespace, the loader driven only
/// through its CLI, and real TCP/UDP/ICMP between them.
final class LoaderCluster {
    let root: TestPinRoot
    let cluster: ClusterNetwork
    let servers: [ProbeServer]
    static let port: UInt16 = 8080

    /// The pods' names in namespace `shop` (pod0, pod1, … unless `podNames` says otherwise).
    let podNames: [String]

    init(pods: Int = 3, ingressDefault: String = "allow", egressDefault: String = "allow", podNames: [String]? = nil) throws {
        self.podNames = podNames ?? (0..<pods).map { "pod\($0)" }
        root = try TestPinRoot()
        cluster = try ClusterNetwork(prefix: UniqueNames.make("nfe"), pods: pods, subnet: 100 + UniqueNames.next() % 100)
        servers = try cluster.pods.map { try ProbeServer(in: $0.namespace, port: Self.port) }
        try cli(["loader", "init"])
        for (index, pod) in cluster.pods.enumerated() {
            try cli(["loader", "attach", "--pod", "shop/\(self.podNames[index])", "--iface", pod.hostInterface, "--netns", cluster.node.name,
                     "--ingress-default", ingressDefault, "--egress-default", egressDefault])
        }
    }

    deinit {
        servers.forEach { $0.stop() }
        _ = try? NetfenceBinary.run(["loader", "reset", "--bpffs-root", root.path])
        cluster.remove()
    }

    /// Runs netfence with this cluster's pin root; a failure fails the test with its stderr.
    @discardableResult
    func cli(_ words: [String], input: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
        try runNetfence(words, root: root, input: input, sourceLocation: sourceLocation)
    }

    /// Whether `probe` from pod `from` reaches pod `to` (IPv6 when `ipv6`).
    func reaches(_ from: Int, _ to: Int, _ probe: Probe, ipv6: Bool = false) throws -> Bool {
        let target = ipv6 ? cluster.pods[to].ipv6 : cluster.pods[to].ipv4
        return try cluster.pods[from].namespace.probe(probe, to: target, port: Self.port)
    }
}

/// Runs netfence with the pin root `root` (and `input` as a file given with -f); a failure
/// fails the test with its stderr.
@discardableResult
func runNetfence(_ words: [String], root: TestPinRoot, input: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
    var arguments = words + ["--bpffs-root", root.path]
    var file: URL?
    if let input {
        file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-\(UniqueNames.make("in")).yaml")
        try input.write(to: file!, atomically: true, encoding: .utf8)
        arguments += ["-f", file!.path]
    }
    defer { file.map { try? FileManager.default.removeItem(at: $0) } }
    let result = try NetfenceBinary.run(arguments)
    #expect(result.status == 0, "netfence \(words.joined(separator: " ")): \(result.standardError)", sourceLocation: sourceLocation)
    return result
}

/// A PolicyEndpoint selecting `pod` with `ingress`/`egress` rules given as YAML lines.
func policyEndpoint(_ name: String, selecting pods: [Int], isolation: [String], ingress: String = "", egress: String = "") -> String {
    let endpoints = pods.map { "  - name: pod\($0)\n    namespace: shop\n" }.joined()
    return """
    apiVersion: networking.k8s.aws/v1alpha1
    kind: PolicyEndpoint
    metadata:
      name: \(name)
      namespace: shop
    spec:
      policyRef:
        name: \(name)
        namespace: shop
      podIsolation: [\(isolation.joined(separator: ", "))]
      podSelectorEndpoints:
    \(endpoints)  ingress:
    \(ingress)
      egress:
    \(egress)

    """
}

@Suite(.serialized) struct LoaderEndToEndTests {
    @Test func attachedPodsTalkUntilAPolicyIsolatesOne() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster()
        for probe in Probe.allCases {
            #expect(try bench.reaches(1, 0, probe), "\(probe) before any policy")
        }
        let podIP1 = bench.cluster.pods[1].ipv4
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: """
          - cidr: \(podIP1)/32
            ports:
            - protocol: TCP
              port: \(LoaderCluster.port)
        """))
        #expect(try bench.reaches(1, 0, .tcp), "allowed peer and port")
        #expect(try !bench.reaches(1, 0, .udp), "UDP not allowed")
        #expect(try !bench.reaches(1, 0, .icmp), "ICMP not allowed")
        #expect(try !bench.reaches(2, 0, .tcp), "other peer")
        #expect(try bench.reaches(0, 2, .tcp), "egress of the isolated pod is not isolated; its replies pass")
        #expect(try bench.reaches(2, 1, .udp), "other pods unaffected")
    }

    @Test func statusShowsPodsObjectsAndDrift() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("deny-in", selecting: [0], isolation: ["Ingress"]))
        func status() throws -> [String: Any] {
            let text = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
            return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        let before = try status()
        let pods = try #require(before["pods"] as? [[String: Any]])
        #expect(pods.map { $0["pod"] as? String } == ["shop/pod0", "shop/pod1"])
        #expect(pods[0]["ingress"] as? String == "policies-applied" && pods[0]["egress"] as? String == "default-allow")
        #expect(pods[0]["objects"] as? [String] == ["PolicyEndpoint shop/deny-in"])
        #expect(pods[0]["revision"] as? Int == 3, "the node's revisions only grow: pod0 attached (1), pod1 (2), then the apply (3)")
        #expect(pods[0]["interface"] as? String == bench.cluster.pods[0].hostInterface)
        #expect((before["objects"] as? [[String: Any]])?.first?["policyRef"] as? String == "shop/deny-in")
        #expect((before["drift"] as? [String]) == [])

        let host = bench.cluster.pods[1].hostInterface
        try TCAttachments.detach(interface: host, direction: .egress, in: bench.cluster.node, handle: 0x4e46, priority: 1)
        #expect((try status()["drift"] as? [String]) == ["shop/pod1: \(host) has no netfence egress filter"])
        try bench.cli(["loader", "attach", "--pod", "shop/pod1", "--iface", host, "--netns", bench.cluster.node.name])
        #expect((try status()["drift"] as? [String]) == [], "re-attaching repairs it")
    }

    @Test func aMovedPodTakesItsPolicyToItsNewInterface() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
        #expect(try !bench.reaches(1, 0, .tcp) && bench.reaches(1, 2, .tcp))
        // pod2's interface now belongs to "pod0" (as if the pod had been recreated there).
        try bench.cli(["loader", "detach", "--pod", "shop/pod2"])
        let moved = try bench.cli(["loader", "attach", "--pod", "shop/pod0", "--iface", bench.cluster.pods[2].hostInterface,
                                   "--netns", bench.cluster.node.name]).standardOutput
        #expect(moved.hasPrefix("Moved shop/pod0 on \(bench.cluster.pods[2].hostInterface)"))
        #expect(try !bench.reaches(1, 2, .tcp), "the policy follows the pod")
        #expect(try bench.reaches(1, 0, .tcp), "its old interface is left unfiltered")
        let old = TCAttachments.scan([bench.cluster.node]).filter { $0.interface == bench.cluster.pods[0].hostInterface }
        #expect(old.isEmpty, "no filter remains on the old interface")
        let status = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
        #expect(status.contains("\"drift\" : [\n\n  ]"))
    }

    @Test func resetRemovesEverything() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
        #expect(try !bench.reaches(1, 0, .tcp))
        try bench.cli(["loader", "reset"])
        #expect(!FileManager.default.fileExists(atPath: bench.root.path), "every pin removed")
        #expect(TCAttachments.scan([bench.cluster.node]).isEmpty, "every filter removed")
        try bench.expectMatrix(allowed: everyEdge(pods: 2), scope: everyEdge(pods: 2), "traffic is no longer filtered")
        let status = try NetfenceBinary.run(["loader", "status", "--bpffs-root", bench.root.path])
        #expect(status.status == 1 && status.standardError.contains("run 'netfence loader init' first"))
    }
}
