import BPFKit
import Foundation
import Glibc
import HostKit
import Testing
import TestSupport

/// Maps with the AWS network-policy agent's layouts (FACTS.md), filled with known
/// entries and decoded by `ebpf dump-maps` / `dump-cp-maps`, field by field.
@Suite struct AWSMapDecodingTests {
    static func bytes<T>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
    static func slots(_ rules: [[UInt32]], width: Int) -> [UInt8] {
        let used = rules.flatMap { $0.flatMap { bytes($0) } }
        return used + [UInt8](repeating: 0, count: 24 * width * 4 - used.count)
    }

    func dump(_ words: [String]) throws -> [[String: Any]] {
        let result = try NetfenceBinary.run(words + ["-o", "json"])
        #expect(result.status == 0, "\(words): \(result.standardError)")
        return try jsonArray(result.standardOutput)
    }

    @Test func policyAndClusterPolicyTriesDecode() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let v4 = try BPFMap(type: .lpmTrie, name: "ingress_map", keySize: 8, valueSize: 288, maxEntries: 16, flags: MapFlags.noPreallocate)
        try v4.update(key: Self.bytes(UInt32(16)) + [198, 18, 0, 0], value: Self.slots([[6, 80, 0], [17, 8000, 8100], [254, 0, 0]], width: 3))
        try v4.update(key: Self.bytes(UInt32(32)) + [198, 18, 9, 9], value: Self.slots([[255, 0, 0]], width: 3))
        try v4.pin(at: root.path + "/web-7d4_shop_ingress_map")
        let rows = try dump(["ebpf", "dump-maps", root.path + "/web-7d4_shop_ingress_map"])
        let wide = rows.filter { $0["cidr"] as? String == "198.18.0.0/16" }
        #expect(wide.map { $0["proto"] as? String } == ["tcp", "udp", "any"])
        #expect(wide.map { $0["ports"] as? String } == ["80", "8000-8100", "any"])
        #expect(wide.allSatisfy { $0["action"] as? String == "accept" && $0["tier"] as? String == "network-policy" })
        let except = try #require(rows.first { $0["cidr"] as? String == "198.18.9.9/32" })
        #expect(except["proto"] as? String == "reserved" && except["action"] as? String == "deny")

        let v6 = try BPFMap(type: .lpmTrie, name: "cp_egress_map", keySize: 20, valueSize: 384, maxEntries: 16, flags: MapFlags.noPreallocate)
        let prefix: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 12)
        // Admin priority 100 accept; Baseline priority 5 deny (offset 2000); Admin priority 7 pass.
        try v6.update(key: Self.bytes(UInt32(32)) + prefix,
                      value: Self.slots([[6, 100 * 10 + 1, 443, 0], [17, (2000 + 5) * 10 + 0, 53, 60], [254, 7 * 10 + 2, 0, 0]], width: 4))
        try v6.pin(at: root.path + "/web-7d4_shop_cp_egress_map")
        let cp = try dump(["ebpf", "dcp", root.path + "/web-7d4_shop_cp_egress_map"])
        #expect(cp.map { $0["cidr"] as? String } == ["2001:db8::/32", "2001:db8::/32", "2001:db8::/32"])
        #expect(cp.map { $0["tier"] as? String } == ["admin", "baseline", "admin"])
        #expect(cp.map { $0["priority"] as? Int } == [100, 5, 7])
        #expect(cp.map { $0["action"] as? String } == ["accept", "deny", "pass"])
        #expect(cp.map { $0["ports"] as? String } == ["443", "53-60", "any"])
    }

    @Test func podStateAndConntrackDecode() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        // Nameless, as the agent's SDK creates it: only the pin says what it is.
        let state = try BPFMap(type: .hash, name: "", keySize: 4, valueSize: 1, maxEntries: 2)
        try state.update(key: Self.bytes(UInt32(0)), value: [0])
        try state.update(key: Self.bytes(UInt32(1)), value: [2])
        try state.pin(at: root.path + "/web-7d4@shop_ingress_pod_state_map")
        let states = try dump(["ebpf", "d", root.path + "/web-7d4@shop_ingress_pod_state_map"])
        let byKind = states.reduce(into: [String: String]()) { byKind, row in
            if let kind = row["policy"] as? String { byKind[kind] = row["state"] as? String }
        }
        #expect(byKind == ["network-policy": "policies-applied", "cluster-policy": "default-deny"], "\(states)")

        let conntrack = try BPFMap(type: .lruHash, name: "", keySize: 24, valueSize: 16, maxEntries: 64)
        let lastSeen = HostClock.monotonic.nanoseconds - 2_000_000_000
        let key: [UInt8] = [198, 18, 0, 1] + Self.bytes(UInt16(40000)) + [0, 0] + [198, 18, 0, 2] + Self.bytes(UInt16(80)) + [6, 0]
            + [198, 18, 0, 2] + Self.bytes(UInt32(7))
        // One code for the (network policy, cluster policy) pair: 6 = (policies applied, default deny).
        try conntrack.update(key: key, value: Self.bytes(UInt64(6)) + Self.bytes(lastSeen))
        try conntrack.pin(at: root.path + "/global_aws_conntrack_map")
        let flow = try #require(try dump(["ebpf", "d", root.path + "/global_aws_conntrack_map"]).first)
        #expect(flow["proto"] as? String == "tcp" && flow["source"] as? String == "198.18.0.1" && flow["sourcePort"] as? Int == 40000)
        #expect(flow["destination"] as? String == "198.18.0.2" && flow["destinationPort"] as? Int == 80)
        #expect(flow["owner"] as? String == "198.18.0.2" && flow["ifindex"] as? Int == 7)
        #expect(flow["stateCode"] as? Int == 6 && flow["npState"] as? String == "policies-applied"
                && flow["cpState"] as? String == "default-deny", "\(flow)")
        let age = try #require(flow["ageSeconds"] as? Double)
        #expect(age >= 2 && age < 30)
    }

    @Test func anAWSNamedMapOfAnotherLayoutIsRefused() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let short = try BPFMap(type: .lpmTrie, name: "ingress_map", keySize: 8, valueSize: 96, maxEntries: 4, flags: MapFlags.noPreallocate)
        try short.pin(at: root.path + "/old_ingress_map")
        let result = try NetfenceBinary.run(["ebpf", "d", root.path + "/old_ingress_map"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("is named like the AWS agent's policy trie but is a lpm_trie map with key 8 B and value 96 B"))
    }
}
