import BPFKit
import Datapath
import DatapathModel
import Foundation
import Loader
import Testing
import TestSupport

/// Detach and attach walk no table: a detached pod's flows, grants and rule hits wait, read
/// by no packet, its id kept from every other pod, until one sweep deletes them for many pods.
@Suite(.serialized) struct DetachSweepTests {
    @Test func aDetachedPodsFlowsWaitAsOrphansAndReconcileSweepsThem() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        #expect(try bench.reaches(0, 1, .tcp) && bench.reaches(1, 0, .tcp))
        func podIDs() throws -> [String: Int] {
            let pods = try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)["pods"] as? [[String: Any]] ?? []
            return Dictionary(uniqueKeysWithValues: pods.compactMap { pod in (pod["pod"] as? String).map { ($0, pod["podID"] as? Int ?? -1) } })
        }
        func flows(of pod: String) throws -> [[String: Any]] {
            try jsonArray(bench.cli(["conntrack", "list", "-o", "json"]).standardOutput).filter { $0["pod"] as? String == pod }
        }
        let before = try podIDs()
        let old = try #require(before["shop/pod0"])
        #expect(try !flows(of: "shop/pod0").isEmpty)
        // A grant the DNS proxy wrote for pod0 (an address it resolved).
        let datapath = try Datapath.open(pinnedUnder: bench.root.path)
        try datapath.write(DomainGrant(podID: UInt32(old), address: IPAddress("198.18.0.77")!,
                                       patterns: [.init(pattern: 1, expiresNanoseconds: UInt64.max)]))
        func listedGrants() throws -> [[String: Any]] { try jsonArray(bench.cli(["fqdn", "list", "-o", "json"]).standardOutput) }
        #expect(try listedGrants().count == 1)

        let started = ContinuousClock.now
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        #expect(ContinuousClock.now - started < .seconds(5))
        let orphans = try flows(of: "pod-id \(old)")
        #expect(!orphans.isEmpty && orphans.allSatisfy { $0["state"] as? String == "orphan" }, "\(orphans)")
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0, "a detached pod's leftovers are no drift")
        func awaitingSweep() throws -> Int? {
            try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)["detachedAwaitingSweep"] as? Int
        }
        #expect(try awaitingSweep() == 1)
        #expect(try bench.cli(["loader", "status"]).standardOutput.contains("1 detached pod(s) keep their ids until a sweep"))
        #expect(try podIDs()["shop/pod0"] == nil)
        #expect(try datapath.grants(podID: UInt32(old)).count == 1 && listedGrants().isEmpty, "kept for the sweep, listed for no pod")

        // A successor on the same interface gets another id, and its own verdicts: isolated, it is not reached.
        try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"])
            .replacingOccurrences(of: "name: pod0", with: "name: pod0-successor"))
        try bench.cli(["loader", "attach", "--pod", "shop/pod0-successor", "--iface", bench.cluster.pods[0].hostInterface,
                       "--netns", bench.cluster.node.name])
        let successor = try #require(try podIDs()["shop/pod0-successor"])
        #expect(successor != old && !before.values.contains(successor), "a detached pod's id is kept until a sweep")
        #expect(try !bench.reaches(1, 0, .tcp))

        let reconciled = try jsonObject(bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput)
        let swept = reconciled["swept"] as? [String: Int] ?? [:]
        #expect(reconciled["sweptPods"] as? Int == 1 && (swept["flows"] ?? 0) >= orphans.count && (swept["ruleHits"] ?? 0) >= 1
                && swept["grants"] == 1, "\(reconciled)")
        #expect(try flows(of: "pod-id \(old)").isEmpty && datapath.grants().isEmpty && awaitingSweep() == 0)
        let again = try jsonObject(bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput)
        #expect(again["sweptPods"] as? Int == 0 && again["swept"] as? [String: Int] == ["flows": 0, "grants": 0, "ruleHits": 0])
        #expect(try bench.cli(["loader", "reconcile"]).standardOutput.contains("Nothing to reconcile"))
    }

    @Test func everySixtyFourthDetachSweepsAndAFullNodeSweepsBeforeItRefuses() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let loader = try Loader.openForChanges(root: bench.root.pinRoot)
        let interface = bench.cluster.pods[0].hostInterface, netns = bench.cluster.node.name
        func detached() throws -> Int { try loader.state.registrations().values.count(where: \.detached) }
        var ids: Set<UInt32> = [try #require(try loader.state.pod(PodReference(namespace: "shop", name: "pod0"))).podID]
        try loader.detach(PodReference(namespace: "shop", name: "pod0"))
        for index in 2..<Loader.sweepEvery {
            let report = try loader.attach(PodReference(namespace: "churn", name: "pod\(index)"), interface: interface, netns: netns, defaults: [:])
            ids.insert(report.podID)
            try loader.detach(PodReference(namespace: "churn", name: "pod\(index)"))
        }
        #expect(ids.count == Loader.sweepEvery - 1, "no id handed out twice before a sweep")
        #expect(try detached() == Loader.sweepEvery - 1)
        _ = try loader.attach(PodReference(namespace: "churn", name: "last"), interface: interface, netns: netns, defaults: [:])
        try loader.detach(PodReference(namespace: "churn", name: "last"))
        #expect(try detached() == 0, "the 64th detach swept")
        #expect(try loader.state.registrations().isEmpty)

        // Every other id held by a detached pod: an attach sweeps first, then finds an id.
        let registry = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/pod_registry"))
        var gone = PodRegistration(ifindex: 1_000_000, denyByDefault: [:], namespace: "churn", name: "gone", interface: "gone0", netns: "")
        gone.detached = true
        let live = try Set(loader.state.registrations().keys)
        for podID in UInt32(0)..<UInt32(DatapathLimits.pods) where !live.contains(podID) {
            try registry.update(key: withUnsafeBytes(of: podID) { Array($0) }, value: gone.encode())
        }
        #expect(try detached() == DatapathLimits.pods)
        let report = try loader.attach(PodReference(namespace: "churn", name: "after"), interface: interface, netns: netns, defaults: [:])
        #expect(try detached() == 0 && loader.state.pods()[report.podID]?.name == "after")
    }
}
