import BPFKit
import Datapath
import DatapathModel
import Foundation
import Testing
import TestSupport

/// Pods whose policy in a direction is identical read one trie: real pods, real
/// packets, and the kernel's own maps as the witness.
@Suite(.serialized) struct SharedTriesTests {
    /// Each pod's trie index per direction (nil: none), from the pods map as the datapath reads it.
    static func tries(_ bench: LoaderCluster) throws -> [String: (ingress: Int?, egress: Int?)] {
        var result: [String: (ingress: Int?, egress: Int?)] = [:]
        for row in try jsonRows(bench.cli(["ebpf", "maps", "dump", "pods", "-o", "json"])) {
            guard let pod = row["pod"] as? String else { continue }
            result[pod] = (row["ingressTrie"] as? Int, row["egressTrie"] as? Int)
        }
        return result
    }

    /// The tries in `policies` that hold a policy: index → pods reading it. Tries with a role (spares,
    /// and tries let go that wait to be recycled) are left out: `roles` has them.
    static func policies(_ bench: LoaderCluster) throws -> [Int: Int] {
        Dictionary(uniqueKeysWithValues: try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"])).compactMap { row in
            guard row["role"] == nil || row["role"] is NSNull else { return nil }
            return (row["index"] as? Int).map { ($0, row["pods"] as? Int ?? 0) }
        })
    }

    /// The tries in `policies` with a role: index → role (spare, arriving, cooling).
    static func roles(_ bench: LoaderCluster) throws -> [Int: String] {
        Dictionary(uniqueKeysWithValues: try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"])).compactMap { row in
            guard let index = row["index"] as? Int, let role = row["role"] as? String else { return nil }
            return (index, role)
        })
    }

    @Test func podsSelectedByTheSameObjectsShareOneTrieAndEachStillEnforcesItsOwn() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        // pod0 and pod1: ingress from pod2 on TCP only. One trie for both.
        let shared = policyEndpoint("shared", selecting: [0, 1], isolation: ["Ingress"], ingress: rule("\(bench.ip(2))/32", ports: [("TCP", 8080, nil)]))
        try bench.cli(["loader", "apply"], input: shared)
        var tries = try Self.tries(bench)
        let one = try #require(tries["shop/pod0"]?.ingress)
        #expect(tries["shop/pod1"]?.ingress == one && tries["shop/pod2"]?.ingress == nil)
        #expect(try Self.policies(bench) == [one: 2], "one trie, read by two pods")
        let scope = everyEdge(pods: 3)
        let base = scope.subtracting(edges("1>0 *", "2>0 *", "0>1 *", "2>1 *"))
        try bench.expectMatrix(allowed: base.union(edges("2>0 tcp", "2>1 tcp")), scope: scope, "shared")

        // pod1 alone gains UDP: its own trie; pod0 keeps the shared one untouched.
        let extra = policyEndpoint("extra", selecting: [1], isolation: ["Ingress"], ingress: rule("\(bench.ip(2))/32", ports: [("UDP", 8080, nil)]))
        try bench.cli(["loader", "apply"], input: extra)
        tries = try Self.tries(bench)
        let own = try #require(tries["shop/pod1"]?.ingress)
        #expect(tries["shop/pod0"]?.ingress == one && own != one)
        #expect(try Self.policies(bench) == [one: 1, own: 1])
        try bench.expectMatrix(allowed: base.union(edges("2>0 tcp", "2>1 tcp", "2>1 udp")), scope: scope, "pod1 its own")

        // Without it pod1's policy is the shared one again: it reads pod0's trie, and its own trie is gone.
        try bench.cli(["loader", "delete"], input: extra)
        tries = try Self.tries(bench)
        #expect(tries["shop/pod1"]?.ingress == one)
        #expect(try Self.policies(bench) == [one: 2], "the trie nobody reads was let go")
        #expect(try Self.roles(bench)[own] == "cooling", "kept for the next change that waits to recycle")
        try bench.expectMatrix(allowed: base.union(edges("2>0 tcp", "2>1 tcp")), scope: scope, "shared again")

        // Detaching one reader leaves the trie to the other; detaching both deletes it.
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        #expect(try Self.policies(bench) == [one: 1])
        let tcp = try bench.reaches(2, 1, .tcp), udp = try bench.reaches(2, 1, .udp)
        #expect(tcp && !udp, "pod1 still enforces the shared trie")
        try bench.cli(["loader", "detach", "--pod", "shop/pod1"])
        #expect(try Self.policies(bench).isEmpty)
        #expect(try Self.roles(bench) == [one: "cooling", own: "cooling"])
        let digests = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policy_digests", "-o", "json"])).compactMap { $0["digest"] as? String }
        #expect(digests == ["cooling", "cooling"], "a trie let go keeps no digest: \(digests)")
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)
    }

    /// A pod attached after others enforce a policy reads their trie when its policy is
    /// the same, and gets its own when only its default differs in a direction with no trie.
    @Test func aPodAttachedLaterReadsTheTrieItsPeersAlreadyShare() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "detach", "--pod", "shop/pod2"])
        try bench.cli(["loader", "apply"], input: clusterPolicy("admin", tier: "Admin", priority: 10, selecting: [0, 1, 2],
                                                               ingress: rule("198.19.0.0/16", action: "Deny")))
        let shared = try #require(try Self.tries(bench)["shop/pod0"]?.ingress)
        try bench.cli(["loader", "attach", "--pod", "shop/pod2", "--iface", bench.cluster.pods[2].hostInterface,
                       "--netns", bench.cluster.node.name, "--ingress-default", "deny"])
        let tries = try Self.tries(bench)
        #expect(tries["shop/pod2"]?.ingress == shared && tries["shop/pod1"]?.ingress == shared, "one trie for three pods")
        #expect(try Self.policies(bench) == [shared: 3])
        // pod2's default (deny) lives in its record, not in the trie: only pod2 is closed.
        let intoPod2 = try bench.reaches(0, 2, .tcp), intoPod0 = try bench.reaches(2, 0, .tcp)
        #expect(!intoPod2 && intoPod0)
    }

    /// Agents re-apply what they hold and re-attach what runs: an identical object keeps its
    /// version, and a pod whose record would not change keeps its tries and revision.
    @Test func reApplyingOrReattachingWhatIsInForceChangesNothing() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let web = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        let api = policyEndpoint("api", selecting: [1], isolation: ["Ingress"], ingress: rule("\(bench.ip(0))/32"))
        try bench.cli(["loader", "apply"], input: web)
        func revisions() throws -> [String: Int] {
            Dictionary(uniqueKeysWithValues: try jsonRows(bench.cli(["ebpf", "maps", "dump", "pods", "-o", "json"])).compactMap { row in
                (row["pod"] as? String).map { ($0, row["revision"] as? Int ?? -1) }
            })
        }
        let before = try revisions(), trie = try Self.policies(bench)
        let mapIDs = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"])).map { $0["mapID"] as? Int }

        let again = try jsonObject(try bench.cli(["loader", "apply", "-o", "json"], input: web).standardOutput)
        #expect((again["objects"] as? [String])?.isEmpty == true && again["unchanged"] as? [String] == ["PolicyEndpoint shop/web"], "\(again)")
        #expect((again["pods"] as? [Any])?.isEmpty == true)
        #expect(try bench.cli(["loader", "apply"], input: web).standardOutput
                == "Unchanged (identical to what is applied): PolicyEndpoint shop/web\n")
        #expect(try revisions() == before && Self.policies(bench) == trie)
        #expect(try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"])).map { $0["mapID"] as? Int } == mapIDs,
                "the same trie, not a copy")

        // Re-attaching pod0 where it is: nothing to flip.
        try bench.cli(["loader", "attach", "--pod", "shop/pod0", "--iface", bench.cluster.pods[0].hostInterface, "--netns", bench.cluster.node.name])
        #expect(try revisions() == before)

        // One changed and one unchanged object in one input: only the changed one is applied.
        let both = try jsonObject(try bench.cli(["loader", "apply", "-o", "json"], input: web + "---\n" + api).standardOutput)
        #expect(both["objects"] as? [String] == ["PolicyEndpoint shop/api"] && both["unchanged"] as? [String] == ["PolicyEndpoint shop/web"])
        let after = try revisions()
        #expect(after["shop/pod0"] == before["shop/pod0"] && after["shop/pod1"] != before["shop/pod1"])
        try bench.expectMatrix(allowed: edges("1>0 tcp", "0>1 tcp", "0>1 udp", "0>1 icmp"), scope: everyEdge(pods: 2), "both in force")
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)
    }

    /// A trie no record names (what a change killed after building it leaves) is deleted by reconcile,
    /// and a change never hands out an index a record names.
    @Test func reconcileDeletesATrieNoPodReads() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32")))
        let named = try #require(try Self.tries(bench)["shop/pod0"]?.ingress)
        let policies = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policies"))
        let stray = try Datapath.makeEmptyTrie()
        let strayIndex = TrieIndex(rawValue: UInt16(named == 0 ? 1 : 0))!
        try policies.setInner(key: strayIndex.key, to: stray)
        #expect(try Self.policies(bench) == [named: 1, Int(strayIndex.rawValue): 0])

        let reconciled = try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput
        #expect(reconciled.contains("\"orphanedTries\" : 1"), "\(reconciled)")
        #expect(try Self.policies(bench) == [named: 1])
        #expect(try bench.reaches(1, 0, .tcp), "pod0 still enforces its trie")
        // The next change builds at a free index, never over the one pod0 reads.
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.podsCIDR)")))
        #expect(try Self.tries(bench)["shop/pod0"]?.ingress != named)
        #expect(try Self.policies(bench).count == 1)
    }
}

/// Domain rule sets outside a pod's live slot (what an apply killed after writing them leaves) are never
/// read, and reconcile deletes them; a detach of a pod without domain rules does not walk the table for them.
@Suite(.serialized) struct StrayDomainRulesTests {
    @Test func reconcileDeletesDomainRulesNoPodReadsAndKeepsTheLiveOnes() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("names", selecting: [0], isolation: ["Egress"],
                                                                  egress: "  - domainName: allowed.test\n    ports: [{protocol: TCP, port: 8080}]"))
        try bench.cli(["loader", "apply"], input: policyEndpoint("plain", selecting: [1], isolation: ["Ingress"], ingress: rule(bench.podsCIDR)))
        let datapath = try Datapath.open(pinnedUnder: bench.root.path)
        let pods = try datapath.registeredPods().map(\.record)
        let named = try #require(pods.first { $0.hasDomainRules }), plain = try #require(pods.first { !$0.hasDomainRules })
        let live = try datapath.domainRules(podID: named.podID, slot: named.slot)
        #expect(live.count == 1)
        func rows() throws -> Int { try jsonRows(bench.cli(["ebpf", "maps", "dump", "domain_rules", "-o", "json"])).count }
        #expect(try rows() == 1)

        // What killed applies leave: a set in the other slot of the pod with domain rules, and one of the pod without.
        let table = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/domain_rules"))
        let rules = RuleSetCodec.encode([PortRule(ruleID: 7, protocolNumber: 6, portStart: 22)])
        try table.update(key: DomainRuleKey(podID: named.podID, slot: named.slot ^ 1, pattern: 1).encode(), value: rules)
        try table.update(key: DomainRuleKey(podID: plain.podID, slot: plain.slot, pattern: 1).encode(), value: rules)
        #expect(try rows() == 3)
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0, "sets outside a live slot with domain rules are not enforced")

        let counted = DatapathGeneration.allCases.map { datapath.generations[$0.rawValue] }
        let reconciled = try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput
        #expect(reconciled.contains("\"strayDomainRules\" : 2"), "\(reconciled)")
        #expect(zip(counted, DatapathGeneration.allCases).allSatisfy { $0.0 < datapath.generations[$0.1.rawValue] },
                "a roll forward makes whoever keeps pods or grants read them again (a kill may have come between a write and its count)")
        #expect(try rows() == 1)
        #expect(try datapath.domainRules(podID: named.podID, slot: named.slot) == live, "the live set stays")
        #expect(try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput.contains("\"strayDomainRules\" : 0"))

        // Detach forgets the sets of a pod with domain rules (both slots), and touches nothing of a pod without.
        try table.update(key: DomainRuleKey(podID: named.podID, slot: named.slot ^ 1, pattern: 1).encode(), value: rules)
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        #expect(try rows() == 0)
        try bench.cli(["loader", "detach", "--pod", "shop/pod1"])
        #expect(try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput.contains("\"strayDomainRules\" : 0"))
    }
}
