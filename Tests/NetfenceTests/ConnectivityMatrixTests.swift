import Foundation
import NodeNetwork
import Testing
import TestSupport

/// One probe of the matrix: from pod, to pod, protocol, family.
struct Edge: Hashable, CustomStringConvertible, Sendable {
    let from: Int, to: Int, probe: Probe, ipv6: Bool
    var description: String { "\(from)>\(to) \(probe)\(ipv6 ? " v6" : "")" }
}

/// `"1>0 tcp"`, `"2>0 *"` (every protocol), `"1>0 tcp v6"`.
func edges(_ specs: String...) -> Set<Edge> {
    Set(specs.flatMap { spec -> [Edge] in
        let words = spec.split(separator: " ")
        let ends = words[0].split(separator: ">").map { Int($0)! }
        let probes = words[1] == "*" ? Probe.allCases : [Probe(rawValue: String(words[1]))!]
        return probes.map { Edge(from: ends[0], to: ends[1], probe: $0, ipv6: words.count > 2) }
    })
}

/// Every ordered pair of distinct pods, every probe, in one family.
func everyEdge(pods: Int = 3, ipv6: Bool = false) -> Set<Edge> {
    Set((0..<pods).flatMap { from in (0..<pods).filter { $0 != from }.flatMap { to in Probe.allCases.map { Edge(from: from, to: to, probe: $0, ipv6: ipv6) } } })
}

extension LoaderCluster {
    /// Probes every edge of `scope` and expects exactly `allowed` to connect.
    func expectMatrix(allowed: Set<Edge>, scope: Set<Edge> = everyEdge(), _ note: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        var reached = Set<Edge>()
        for edge in scope.sorted(by: { $0.description < $1.description }) where try reaches(edge.from, edge.to, edge.probe, ipv6: edge.ipv6) {
            reached.insert(edge)
        }
        let expected = allowed.intersection(scope)
        let unexpected = reached.subtracting(expected).map(\.description).sorted()
        let missing = expected.subtracting(reached).map(\.description).sorted()
        #expect(unexpected.isEmpty && missing.isEmpty,
                "\(note): connected but should not: \(unexpected); should connect but did not: \(missing)", sourceLocation: sourceLocation)
    }

    func ip(_ pod: Int) -> String { cluster.pods[pod].ipv4 }
    func ip6(_ pod: Int) -> String { cluster.pods[pod].ipv6 }
    /// The /24 all pods' IPv4 addresses share.
    var podsCIDR: String { ip(0).split(separator: ".").prefix(3).joined(separator: ".") + ".0/24" }
}

/// A ClusterPolicyEndpoint in YAML.
func clusterPolicy(_ name: String, tier: String, priority: Int, selecting pods: [Int], ingress: String = "", egress: String = "") -> String {
    let endpoints = pods.map { "  - name: pod\($0)\n    namespace: shop\n" }.joined()
    return """
    apiVersion: networking.k8s.aws/v1alpha1
    kind: ClusterPolicyEndpoint
    metadata:
      name: \(name)
    spec:
      policyRef:
        name: \(name)
      tier: \(tier)
      priority: \(priority)
      podSelectorEndpoints:
    \(endpoints)  ingress:
    \(ingress)
      egress:
    \(egress)

    """
}

/// A rule in YAML: `- cidr: …` with optional except, ports and action.
func rule(_ cidr: String, except: [String] = [], ports: [(String, Int, Int?)] = [], action: String? = nil) -> String {
    var text = "  - cidr: \(cidr)\n"
    if let action { text += "    action: \(action)\n" }
    if !except.isEmpty { text += "    except:\n" + except.map { "    - \($0)\n" }.joined() }
    if !ports.isEmpty {
        text += "    ports:\n" + ports.map { proto, port, end in "    - protocol: \(proto)\n      port: \(port)\n" + (end.map { "      endPort: \($0)\n" } ?? "") }.joined()
    }
    return text
}

let everything = everyEdge()
func without(_ removed: Set<Edge>) -> Set<Edge> { everything.subtracting(removed) }
let intoPod0 = edges("1>0 *", "2>0 *")

/// The scenarios of issue 4, each on a fresh node with three pods.
@Suite(.serialized) struct ConnectivityMatrixTests {
    typealias Scenario = @Sendable (LoaderCluster) throws -> Void
    static let port = Int(LoaderCluster.port)

    static let scenarios: [(String, String, String, Scenario)] = [
        ("no policy: everything connects", "allow", "allow", { bench in
            try bench.expectMatrix(allowed: everything)
        }),
        ("default deny both ways", "deny", "deny", { bench in
            try bench.expectMatrix(allowed: [])
        }),
        ("default deny ingress on every pod: nothing arrives", "deny", "allow", { bench in
            try bench.expectMatrix(allowed: [])
        }),
        ("ingress isolation with no rules", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
            try bench.expectMatrix(allowed: without(intoPod0))
        }),
        ("allow one peer on one port", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)])))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 tcp")))
        }),
        ("allow from a CIDR with an except hole", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("cidr", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule(bench.podsCIDR, except: ["\(bench.ip(2))/32"])))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 *")))
        }),
        ("a port range that covers the port", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("range", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("0.0.0.0/0", ports: [("UDP", port - 80, port + 20)])))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 udp", "2>0 udp")))
        }),
        ("a port range that misses the port", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("range", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("0.0.0.0/0", ports: [("UDP", port + 1, port + 100)])))
            try bench.expectMatrix(allowed: without(intoPod0))
        }),
        ("egress allow plus the DNS port", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("egress", selecting: [0], isolation: ["Egress"], egress:
                rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]) + rule("\(bench.ip(2))/32", ports: [("UDP", port, nil), ("UDP", 53, nil)])))
            try bench.expectMatrix(allowed: without(edges("0>1 *", "0>2 *")).union(edges("0>1 tcp", "0>2 udp")))
        }),
        ("two policies selecting one pod: their union", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("a", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
                + "---\n" + policyEndpoint("b", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(2))/32", ports: [("UDP", port, nil)])))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 tcp", "2>0 udp")))
        }),
        ("Admin Deny over a NetworkPolicy allow", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("all", selecting: [0], isolation: ["Ingress"], ingress: rule("0.0.0.0/0"))
                + "---\n" + clusterPolicy("block", tier: "Admin", priority: 10, selecting: [0], ingress: rule("\(bench.ip(1))/32", action: "Deny")))
            try bench.expectMatrix(allowed: without(edges("1>0 *")))
        }),
        ("Admin Pass to the NetworkPolicy tier", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
                + "---\n" + clusterPolicy("delegate", tier: "Admin", priority: 10, selecting: [0], ingress: rule(bench.podsCIDR, action: "Pass")))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 tcp")))
        }),
        ("Admin Accept over a NetworkPolicy that denies", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"])
                + "---\n" + clusterPolicy("ops", tier: "Admin", priority: 10, selecting: [0], ingress: rule("\(bench.ip(2))/32", action: "Accept")))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("2>0 *")))
        }),
        ("Baseline Allow overridden by a NetworkPolicy", "deny", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("base", tier: "Baseline", priority: 10, selecting: [0], ingress: rule("0.0.0.0/0", action: "Accept"))
                + "---\n" + policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(2))/32", ports: [("TCP", port, nil)])))
            try bench.expectMatrix(allowed: edges("2>0 tcp"))
        }),
        ("Baseline Allow lets a strict pod receive", "deny", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("base", tier: "Baseline", priority: 10, selecting: [0], ingress: rule("\(bench.ip(1))/32", action: "Accept")))
            try bench.expectMatrix(allowed: edges("1>0 *"))
        }),
        ("Baseline Deny for an unselected pod", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("base", tier: "Baseline", priority: 10, selecting: [0], ingress: rule("\(bench.ip(1))/32", action: "Deny")))
            try bench.expectMatrix(allowed: without(edges("1>0 *")))
        }),
        ("Baseline Pass falls to the default", "deny", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("base", tier: "Baseline", priority: 10, selecting: [0], ingress: rule(bench.podsCIDR, action: "Pass")))
            try bench.expectMatrix(allowed: [])
        }),
        ("equal priority: Deny beats Accept", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("tie", tier: "Admin", priority: 10, selecting: [0],
                                                                  ingress: rule("\(bench.ip(1))/32", action: "Accept") + rule("\(bench.ip(1))/32", action: "Deny")))
            try bench.expectMatrix(allowed: without(edges("1>0 *")))
        }),
        ("lower priority number wins", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("first", tier: "Admin", priority: 5, selecting: [0], ingress: rule("\(bench.ip(1))/32", action: "Accept"))
                + "---\n" + clusterPolicy("second", tier: "Admin", priority: 10, selecting: [0], ingress: rule(bench.podsCIDR, action: "Deny")))
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 *")))
        }),
        ("IPv6 peers", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("v6", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("\(bench.ip6(1))/128", ports: [("TCP", port, nil)])))
            try bench.expectMatrix(allowed: everyEdge(ipv6: true).subtracting(edges("1>0 * v6", "2>0 * v6")).union(edges("1>0 tcp v6")),
                                   scope: everyEdge(ipv6: true))
            try bench.expectMatrix(allowed: without(intoPod0), "IPv4 is not allowed by the IPv6 rule")
        }),
        ("replies of allowed flows pass a deny-all ingress", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("both", selecting: [0], isolation: ["Ingress", "Egress"],
                                                                   egress: rule("\(bench.ip(1))/32")))
            try bench.expectMatrix(allowed: without(intoPod0).subtracting(edges("0>2 *")))
        }),
        ("a policy update cuts new connections", "allow", "allow", { bench in
            let open = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32"))
            try bench.cli(["loader", "apply"], input: open)
            try bench.expectMatrix(allowed: without(edges("2>0 *")), "before")
            try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(2))/32")))
            try bench.expectMatrix(allowed: without(edges("1>0 *")), "after")
        }),
        ("deleting the policy restores the default", "allow", "allow", { bench in
            let document = policyEndpoint("iso", selecting: [0], isolation: ["Ingress"])
            try bench.cli(["loader", "apply"], input: document)
            try bench.expectMatrix(allowed: without(intoPod0), "applied")
            try bench.cli(["loader", "delete"], input: document)
            try bench.expectMatrix(allowed: everything, "deleted")
        }),
        ("Admin Deny on egress", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: clusterPolicy("out", tier: "Admin", priority: 1, selecting: [0], egress: rule("\(bench.ip(2))/32", action: "Deny")))
            try bench.expectMatrix(allowed: without(edges("0>2 *")))
        }),
        ("a protocol no probe uses (SCTP)", "allow", "allow", { bench in
            try bench.cli(["loader", "apply"], input: policyEndpoint("sctp", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("0.0.0.0/0", ports: [("SCTP", port, nil)])))
            try bench.expectMatrix(allowed: without(intoPod0))
        }),
        ("re-applying the same object changes nothing", "allow", "allow", { bench in
            let document = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("UDP", port, nil)]))
            try bench.cli(["loader", "apply"], input: document)
            try bench.cli(["loader", "apply"], input: document)
            try bench.expectMatrix(allowed: without(intoPod0).union(edges("1>0 udp")))
        }),
    ]

    @Test func thereAreAtLeast25Scenarios() { #expect(Self.scenarios.count >= 25) }

    @Test(arguments: 0..<scenarios.count)
    func scenario(_ index: Int) throws {
        guard Privileges.require() else { return }
        let (name, ingress, egress, body) = Self.scenarios[index]
        let bench = try LoaderCluster(pods: 3, ingressDefault: ingress, egressDefault: egress)
        print("scenario \(index): \(name)")
        try body(bench)
    }

    @Test func anObjectForAPodNotYetAttachedTakesEffectWhenItAttaches() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        try bench.cli(["loader", "apply"], input: policyEndpoint("early", selecting: [0], isolation: ["Ingress"]))
        try bench.expectMatrix(allowed: everything, "detached: nothing enforced")
        try bench.cli(["loader", "attach", "--pod", "shop/pod0", "--iface", bench.cluster.pods[0].hostInterface, "--netns", bench.cluster.node.name])
        try bench.expectMatrix(allowed: without(intoPod0), "attached: the stored object applies")
    }
}
