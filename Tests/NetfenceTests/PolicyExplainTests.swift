import Foundation
import NodeNetwork
import Testing
import TestSupport

/// Issue 16 end to end: pods as network namespaces, the CLI, real traffic.
/// explain is asked first, then the packet is sent: explain's verdict, the
/// kernel's confirmation and the real outcome must agree. dry-run predicts
/// what traffic shows after the real apply; audit objects drop nothing and
/// report each would-deny flow once; hit counters equal the connections made.
@Suite(.serialized) struct PolicyExplainTests {
    func json(_ bench: LoaderCluster, _ words: [String]) throws -> [String: Any] {
        let result = try bench.cli(words + ["-o", "json"])
        return try #require(try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
    }

    func explain(_ bench: LoaderCluster, pod: Int, _ direction: String, peer: Int, proto: String, port: Int?) throws -> [String: Any] {
        var words = ["policy", "explain", "--pod", "shop/pod\(pod)", "--direction", direction, "--peer", bench.ip(peer), "--proto", proto]
        if let port { words += ["--port", String(port)] }
        return try json(bench, words)
    }

    @Test func explainAgreesWithTheKernelAndWithRealTraffic() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let port = Int(LoaderCluster.port)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)])))
        try bench.cli(["loader", "apply"], input: clusterPolicy("block-two", tier: "Admin", priority: 10, selecting: [0],
                                                                ingress: rule("\(bench.ip(2))/32", action: "Deny")))
        // (from, proto, expected verdict, expected tier, whether real traffic gets through)
        let cases: [(Int, String, String, String)] = [(1, "tcp", "allow", "network-policy"), (1, "udp", "deny", "network-policy"),
                                                      (2, "tcp", "deny", "admin"), (1, "icmp", "deny", "network-policy")]
        for (from, proto, verdict, tier) in cases {
            let answer = try explain(bench, pod: 0, "ingress", peer: from, proto: proto, port: proto == "icmp" ? nil : port)
            let decision = try #require(answer["decision"] as? [String: Any])
            #expect(decision["verdict"] as? String == verdict && decision["tier"] as? String == tier, "pod\(from) \(proto): \(decision)")
            let kernel = try #require(answer["kernel"] as? [String: Any])
            #expect(kernel["agrees"] as? Bool == true, "the loaded program decides the same: \(kernel)")
            let probe: Probe = proto == "tcp" ? .tcp : proto == "udp" ? .udp : .icmp
            #expect(try bench.reaches(from, 0, probe) == (verdict == "allow"), "pod\(from) \(proto): explain said \(verdict)")
        }
        let allowed = try explain(bench, pod: 0, "ingress", peer: 1, proto: "tcp", port: port)
        #expect((allowed["decision"] as? [String: Any])?["policy"] as? String == "shop/web")
        #expect((allowed["rules"] as? [[String: Any]])?.contains { $0["policy"] as? String == "shop/web" && $0["matches"] as? Bool == true } == true)
        #expect((allowed["conntrack"] as? [[String: Any]])?.isEmpty == false, "the connection made above is tracked: it passes before policy")
        let admin = try #require(try explain(bench, pod: 0, "ingress", peer: 2, proto: "tcp", port: port)["why"] as? String)
        #expect(admin.contains("Admin priority 10 Deny by block-two"), "\(admin)")
        let isolated = try #require(try explain(bench, pod: 0, "ingress", peer: 1, proto: "udp", port: port)["why"] as? String)
        #expect(isolated == "isolated by shop/web ingress: no rule matches \(bench.ip(1)):\(port)/udp", "\(isolated)")

        let table = try bench.cli(["policy", "explain", "--pod", "shop/pod0", "--direction", "ingress", "--peer", bench.ip(2), "--port", String(port)])
        #expect(table.standardOutput.contains("decision: deny by admin (block-two rule 0)") && table.standardOutput.contains("kernel: nf_to_pod"),
                "\(table.standardOutput)")
    }

    @Test func explainingChangesNothing() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32")))
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try bench.cli(["ebpf", "events"])
        let conntrack = try bench.cli(["conntrack", "list", "-o", "json"]).standardOutput
        let hits = try bench.cli(["policy", "show", "--pod", "shop/pod0", "-o", "json"]).standardOutput
        for _ in 0..<3 { _ = try explain(bench, pod: 0, "ingress", peer: 1, proto: "tcp", port: 80) }
        #expect(try bench.cli(["ebpf", "events", "-o", "json"]).standardOutput.isEmpty, "no event")
        #expect(try bench.cli(["conntrack", "list", "-o", "json"]).standardOutput == conntrack, "no conntrack entry")
        #expect(try bench.cli(["policy", "show", "--pod", "shop/pod0", "-o", "json"]).standardOutput == hits, "no hit")
    }

    @Test func badQuestionsAreOneLineErrors() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        func run(_ words: [String]) throws -> CommandResult { try NetfenceBinary.run(words + ["--bpffs-root", bench.root.path]) }
        let unknown = try run(["policy", "explain", "--pod", "shop/ghost", "--direction", "ingress", "--peer", "198.18.0.1", "--port", "80"])
        #expect(unknown.status == 1 && unknown.standardError == "error: pod shop/ghost is not attached on this node; see 'netfence loader status'\n")
        let icmpPort = try run(["policy", "explain", "--pod", "shop/pod0", "--direction", "ingress", "--peer", "198.18.0.1", "--proto", "icmp", "--port", "80"])
        #expect(icmpPort.status == 64 && icmpPort.standardError.hasPrefix("Error: icmp has no ports: leave out --port and --peer-port"))
        let family = try run(["policy", "explain", "--pod", "shop/pod0", "--direction", "ingress", "--peer", "2001:db8::1", "--proto", "icmp"])
        #expect(family.status == 64 && family.standardError.hasPrefix("Error: icmp is IPv4's: use --proto icmpv6 for an IPv6 peer"))
        let noPort = try run(["policy", "explain", "--pod", "shop/pod0", "--direction", "ingress", "--peer", "198.18.0.1"])
        #expect(noPort.status == 64 && noPort.standardError.hasPrefix("Error: --port is needed for tcp"))
        let badPeer = try run(["policy", "explain", "--pod", "shop/pod0", "--direction", "ingress", "--peer", "nowhere", "--port", "1"])
        #expect(badPeer.status == 64 && badPeer.standardError.hasPrefix("Error: 'nowhere' is not a valid value for '--peer'"))
    }

    @Test func aDryRunPredictsWhatTrafficShowsAfterTheRealApplyAndChangesNothing() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let port = Int(LoaderCluster.port)
        let web = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
        let before = try Self.stateMaps(bench)
        let folder = try TemporaryFolder("nf-dry")
        try web.write(toFile: "\(folder.path)/web.yaml", atomically: true, encoding: .utf8)
        let plan = try json(bench, ["loader", "apply", "--dry-run", "--probe", "\(bench.ip(1)):\(port)/tcp", "--probe", "\(bench.ip(2)):\(port)/tcp",
                                    "--probe", "\(bench.ip(1))/icmp", "-f", "\(folder.path)/web.yaml"])
        #expect(try Self.stateMaps(bench) == before, "the state maps are byte-identical after a dry run")
        let changes = try #require(plan["changes"] as? [[String: Any]])
        let ingress = try #require(changes.first { $0["pod"] as? String == "shop/pod0" && $0["direction"] as? String == "ingress" })
        #expect(ingress["stateBefore"] as? String == "default-allow" && ingress["stateAfter"] as? String == "policies-applied")
        #expect((ingress["prefixesAdded"] as? [String]) == ["\(bench.ip(1))/32"] && (ingress["rulesAdded"] as? [String])?.count == 1)
        let probes = try #require(ingress["probes"] as? [[String: Any]])
        let predicted = probes.map { ($0["after"] as? String ?? "").hasPrefix("allow") }
        #expect(predicted == [true, false, false], "\(probes)")

        try bench.cli(["loader", "apply"], input: web)
        #expect(try bench.reaches(1, 0, .tcp) == predicted[0] && bench.reaches(2, 0, .tcp) == predicted[1] && bench.reaches(1, 0, .icmp) == predicted[2])
    }

    @Test func anAuditObjectDropsNothingAndReportsEachWouldDenyFlowOnce() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let port = Int(LoaderCluster.port)
        var audit = policyEndpoint("lockdown", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
        audit = audit.replacingOccurrences(of: "  namespace: shop\nspec:", with: "  namespace: shop\n  annotations:\n    netfence.io/mode: audit\nspec:")
        try bench.cli(["loader", "apply"], input: audit)
        let status = try json(bench, ["loader", "status"])
        #expect((status["objects"] as? [[String: Any]])?.first?["mode"] as? String == "audit")
        try bench.cli(["ebpf", "events", "level", "deny"])
        _ = try bench.cli(["ebpf", "events"])
        // pod2 is outside the audit rule: its connections go through, each new one reported as would-deny.
        let connections = 3
        for _ in 0..<connections { #expect(try bench.reaches(2, 0, .tcp), "audit drops nothing") }
        #expect(try bench.reaches(1, 0, .tcp), "the audit rule's own peer")
        let events = try bench.cli(["ebpf", "events", "--verdict", "audit", "-o", "json"]).standardOutput.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let wouldDeny = events.filter { $0["reason"] as? String == "would-deny" && $0["source"] as? String == bench.ip(2) && $0["proto"] as? String == "tcp" }
        #expect(wouldDeny.count == connections, "one audit event per new flow it would deny: \(events)")
        #expect(wouldDeny.allSatisfy { $0["policy"] as? String == "isolation by shop/lockdown" || $0["policy"] as? String == "isolation" })
        #expect(!events.contains { $0["source"] as? String == bench.ip(1) }, "the flow it allows raises nothing")
        let explained = try explain(bench, pod: 0, "ingress", peer: 2, proto: "tcp", port: port)
        #expect((explained["decision"] as? [String: Any])?["verdict"] as? String == "allow")
        #expect((explained["auditDecision"] as? [String: Any])?["verdict"] as? String == "deny")
        #expect((explained["kernel"] as? [String: Any])?["agrees"] as? Bool == true)

        // Promoting it: the same object without the mark enforces it.
        try bench.cli(["loader", "apply"], input: audit.replacingOccurrences(of: "netfence.io/mode: audit", with: "netfence.io/mode: enforce"))
        #expect(try !bench.reaches(2, 0, .tcp) && bench.reaches(1, 0, .tcp))
    }

    @Test func hitCountersCountTheConnectionsEachRuleDecided() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let port = Int(LoaderCluster.port)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)])
                                                                   + rule("\(bench.ip(2))/32", ports: [("UDP", port, nil)])))
        for _ in 0..<4 { #expect(try bench.reaches(1, 0, .tcp)) }
        for _ in 0..<2 { #expect(try bench.reaches(2, 0, .udp)) }
        #expect(try !bench.reaches(2, 0, .icmp))
        let view = try json(bench, ["policy", "show", "--pod", "shop/pod0"])
        let ingress = try #require((view["directions"] as? [[String: Any]])?.first { $0["direction"] as? String == "ingress" })
        let rules = try #require((ingress["objects"] as? [[String: Any]])?.first?["rules"] as? [[String: Any]])
        func hits(_ rule: [String: Any]) -> (Int, Int) {
            let hits = rule["hits"] as? [String: Any] ?? [:]
            return (hits["allowed"] as? Int ?? -1, hits["denied"] as? Int ?? -1)
        }
        #expect(rules.count == 2 && hits(rules[0]) == (4, 0) && hits(rules[1]) == (2, 0), "\(rules)")
        let isolation = ingress["isolation"] as? [String: Any]
        #expect(isolation?["denied"] as? Int == 1 && isolation?["allowed"] as? Int == 0, "the ping the isolation denied: \(String(describing: isolation))")

        let dump = try bench.cli(["ebpf", "maps", "dump", "--pod", "shop/pod0", "--direction", "ingress", "-o", "json"]).standardOutput
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [[String: Any]])
        #expect(rows.contains { $0["hitsAllowed"] as? Int == 4 } && rows.contains { $0["hitsAllowed"] as? Int == 2 }, "HITS columns: \(rows)")
        let metrics = try bench.cli(["metrics"]).standardOutput
        #expect(metrics.contains(#"netfence_rule_flows_total{policy="shop/web",rule="ingress[0]",tier="network-policy",verdict="allow"} 4"#), "\(metrics)")

        // Re-applied, an object is a new version: its counts start again.
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)])))
        let again = try json(bench, ["policy", "show", "--pod", "shop/pod0"])
        let fresh = (again["directions"] as? [[String: Any]])?.first { $0["direction"] as? String == "ingress" }
        let freshRules = (fresh?["objects"] as? [[String: Any]])?.first?["rules"] as? [[String: Any]] ?? []
        #expect(freshRules.count == 1 && hits(freshRules[0]) == (0, 0), "\(freshRules)")
    }

    /// The bytes of netfence's state and policy maps, key by key (what a dry run must not change).
    static func stateMaps(_ bench: LoaderCluster) throws -> [String] {
        var dumps: [String] = []
        for map in ["pods", "revisions", "policies", "domain_rules"] {
            dumps.append(try bench.cli(["ebpf", "maps", "dump", map, "--raw", "-o", "json"]).standardOutput)
        }
        for folder in ["state"] {
            let path = "\(bench.root.path)/\(folder)"
            for name in (try FileManager.default.contentsOfDirectory(atPath: path)).sorted() {
                dumps.append(name + ": " + (try bench.cli(["ebpf", "maps", "dump", "\(path)/\(name)", "--raw", "-o", "json"]).standardOutput))
            }
        }
        return dumps
    }
}
