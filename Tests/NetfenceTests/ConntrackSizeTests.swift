import BPFKit
@testable import DatapathModel
import Foundation
import Testing
import TestSupport

/// `loader init --conntrack-entries`: the table's size is chosen at init, kept by a
/// plain re-init, and a resize carries the tracked flows over.
@Suite(.serialized) struct ConntrackSizeTests {
    @Test func aResizeCarriesTheTrackedFlowsOverAndAPlainReinitKeepsTheSize() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("closed", selecting: [0], isolation: ["Ingress", "Egress"],
                                                                 ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        let open = try #require(try bench.cluster.pods[1].namespace.openConnection(to: bench.ip(0), port: LoaderCluster.port))
        #expect(open.echoes())
        func trackedFlow() throws -> [String: Any]? {
            try jsonArray(bench.cli(["conntrack", "list", "--pod", "shop/pod0", "--port", "8080", "-o", "json"]).standardOutput).first
        }
        let before = try #require(try trackedFlow())

        let resized = try jsonObject(try bench.cli(["loader", "init", "--conntrack-entries", "8192", "-o", "json"]).standardOutput)
        let resize = try #require(resized["conntrackResize"] as? [String: Any], "\(resized)")
        #expect(resize["from"] as? Int == DatapathLimits.conntrackEntries && resize["to"] as? Int == 8192)
        #expect((resize["carriedOver"] as? Int ?? 0) >= 1 && resized["conntrackEntries"] as? Int == 8192)
        #expect(!(resized["migrated"] as? [String] ?? []).contains("conntrack"), "a resize is not an incompatible map")
        // No packet passed since: the flow in the new table is the one carried over, with its first packet's tier and rule.
        let after = try #require(try trackedFlow(), "the open connection's flow is in the new table")
        for field in ["source", "sourcePort", "destination", "destinationPort", "tier", "policy", "rule", "state"] {
            #expect("\(after[field] ?? "nil")" == "\(before[field] ?? "nil")", "\(field)")
        }
        #expect(open.echoes())

        // A plain re-init keeps the chosen size; status shows it.
        let again = try jsonObject(try bench.cli(["loader", "init", "-o", "json"]).standardOutput)
        #expect(again["conntrackEntries"] as? Int == 8192 && (again["conntrackResize"] == nil || again["conntrackResize"] is NSNull))
        #expect((again["reused"] as? [String])?.contains("conntrack") == true)
        let status = try jsonObject(try bench.cli(["loader", "status", "-o", "json"]).standardOutput)
        let maps = try #require(status["maps"] as? [[String: Any]])
        #expect(maps.first { $0["name"] as? String == "conntrack" }?["maxEntries"] as? Int == 8192)
        #expect(try trackedFlow() != nil)
    }

    @Test func aSmallerTableKeepsTheMostRecentlySeenFlows() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let table = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/conntrack"))
        // 10,000 flows, flow i last seen at i seconds: only the newest can fit 4,096 entries.
        for flow in 0..<10_000 {
            let entry = ConntrackEntry(ifindex: 7, family: 4, protocolNumber: 17, low: IPAddress("198.18.0.1")!, lowPort: UInt16(10_000 + flow % 50_000),
                                       high: IPAddress("198.18.\(1 + flow / 250).\(flow % 250)")!, highPort: 53,
                                       lastSeenNanoseconds: UInt64(flow) * 1_000_000_000, revision: 1, ruleID: 0, podID: 0, direction: .egress,
                                       tier: .podDefault, firstFromHigh: false)
            let (key, value) = entry.encode()
            try table.update(key: key, value: value)
        }
        let resized = try jsonObject(try bench.cli(["loader", "init", "--conntrack-entries", "4096", "-o", "json"]).standardOutput)
        let carried = try #require((resized["conntrackResize"] as? [String: Any])?["carriedOver"] as? Int)
        #expect(carried > 0 && carried <= 4096)
        let now = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/conntrack"))
        #expect(try now.info().maxEntries == 4096)
        var seen: [UInt64] = []
        try now.forEachBatch { batch in
            for index in 0..<batch.count {
                if let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)) { seen.append(entry.lastSeenNanoseconds / 1_000_000_000) }
            }
        }
        #expect(seen.count == carried)
        #expect(Set(seen).isSuperset(of: Set((9_000..<10_000).map(UInt64.init))), "the 1,000 most recent flows are all kept")
        #expect(seen.allSatisfy { $0 >= 10_000 - 4_096 }, "nothing older than what fits: oldest kept \(seen.min() ?? 0)")
    }

    @Test func aSizeOutsideTheRangeIsRefusedAndChangesNothing() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        defer { _ = try? NetfenceBinary.run(["loader", "reset", "--bpffs-root", root.path]) }
        for bad in ["100", "99999999", "lots", "-5"] {
            let result = try NetfenceBinary.run(["loader", "init", "--conntrack-entries", bad, "--bpffs-root", root.path])
            #expect(result.status == 64 && result.standardError.hasPrefix("Error: ") && result.standardError.contains("--conntrack-entries"),
                    "\(bad): \(result.standardError)")
        }
        #expect(!FileManager.default.fileExists(atPath: root.path + "/maps/conntrack"), "a refused init pins nothing")
    }
}
