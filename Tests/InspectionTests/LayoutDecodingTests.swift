import CNetfenceABI
import Foundation
import Loader
import Testing

@testable import DatapathModel
@testable import Inspection
@testable import PolicyInput

/// The map layouts over byte buffers built here, without a kernel: each field of
/// an entry as `ebpf maps dump -o json` shows it. (The privileged suites read the
/// same layouts from real maps; these pin the decoding itself.)
@Suite struct LayoutDecodingTests {
    /// The rows `layout` makes of one entry, as the JSON the dump prints.
    static func rows(_ layout: some MapLayout, key: [UInt8], value: [UInt8]) throws -> [[String: Any]] {
        var text = ""
        let writer = RecordWriter(columns: layout.columns, format: .json) { text += String(decoding: $0, as: UTF8.self) }
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in layout.decode(key: key, value: value, into: writer) } }
        writer.finish()
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    static let pod = PodRegistration(ifindex: 7, denyByDefault: [:], namespace: "shop", name: "web-0", interface: "nfveth0", netns: "")
    static let web = PolicyObject(key: ObjectKey(kind: .policyEndpoint, namespace: "shop", name: "web-abc"), policyRef: "shop/web",
                                  isolation: [.ingress], pods: [SelectedPod(pod: PodReference(namespace: "shop", name: "web-0"))],
                                  ingress: [], egress: [], tier: nil, priority: 0)

    /// Names as the loader knows them: pod id 3 is shop/web-0, object 5 is shop/web.
    static var context: DecodeContext {
        var context = DecodeContext(attribution: Attribution(pods: [3: pod], objects: [5: web]))
        context.revisions = [3: 9]
        context.trieReaders = [TrieIndex(rawValue: 12)!: (.egress, [3, 4])]
        context.monotonicNow = 10_000_000_000
        return context
    }

    @Test func aConntrackEntryReadsAsItsFlowStateAndRule() throws {
        let rule = RuleID(objectIndex: 5, direction: .ingress, rule: 2).rawValue
        let entry = ConntrackEntry(ifindex: 7, family: 4, protocolNumber: 6, low: IPAddress("198.18.0.1")!, lowPort: 40000,
                                   high: IPAddress("198.18.0.2")!, highPort: 80, lastSeenNanoseconds: 7_500_000_000, revision: 9,
                                   ruleID: rule, podID: 3, direction: .ingress, tier: .networkPolicy, firstFromHigh: false)
        let (key, value) = entry.encode()
        let row = try #require(try Self.rows(ConntrackLayout(context: Self.context), key: key, value: value).first)
        #expect(row["pod"] as? String == "shop/web-0" && row["interface"] as? String == "nfveth0" && row["direction"] as? String == "ingress")
        #expect(row["proto"] as? String == "tcp" && row["source"] as? String == "198.18.0.1" && row["sourcePort"] as? Int == 40000)
        #expect(row["destination"] as? String == "198.18.0.2" && row["destinationPort"] as? Int == 80)
        #expect(row["state"] as? String == "current" && row["revision"] as? Int == 9 && row["tier"] as? String == "network-policy")
        #expect(row["policy"] as? String == "shop/web" && row["rule"] as? Int == 2 && row["ageSeconds"] as? Double == 2.5)

        let stale = ConntrackEntry(ifindex: 7, family: 4, protocolNumber: 1, low: IPAddress("198.18.0.1")!, lowPort: 77,
                                   high: IPAddress("198.18.0.2")!, highPort: 77, lastSeenNanoseconds: 0, revision: 8, ruleID: 0, podID: 3,
                                   direction: .egress, tier: .podDefault, firstFromHigh: true).encode()
        let echo = try #require(try Self.rows(ConntrackLayout(context: Self.context), key: stale.key, value: stale.value).first)
        #expect(echo["state"] as? String == "stale" && echo["icmpID"] as? Int == 77 && echo["sourcePort"] as? Int == 0, "an echo id is not a port")
        #expect(echo["source"] as? String == "198.18.0.2", "the first packet went from the high endpoint")
    }

    /// A dump writes the fields a pod or a rule decides once and copies them into later rows:
    /// every row of one writer reads byte for byte as the same entry written alone, in both
    /// formats, across more keys than the copies have slots and with names too long to copy.
    @Test func rowsThatRepeatFieldsReadAsTheyWouldAlone() throws {
        let long = PodRegistration(ifindex: 8, denyByDefault: [:], namespace: "shop", name: "caf\u{e9}-" + String(repeating: "x", count: 600),
                                   interface: "nfveth1", netns: "")
        var context = DecodeContext(attribution: Attribution(pods: [3: Self.pod, 4: long], objects: [5: Self.web], retired: [6: "shop/old"]))
        context.revisions = [3: 9, 4: 2]
        context.monotonicNow = 10_000_000_000
        let layout = ConntrackLayout(context: context)
        let entries = (0..<3000).map { index in
            ConntrackEntry(ifindex: 7, family: index % 3 == 0 ? 6 : 4, protocolNumber: [6, 17, 1, 58][index % 4],
                           low: IPAddress(index % 3 == 0 ? "2001:db8::\(index % 97)" : "198.18.0.\(index % 200)")!, lowPort: UInt16(index),
                           high: IPAddress(index % 3 == 0 ? "2001:db8:1::10" : "198.19.0.10")!, highPort: 80,
                           lastSeenNanoseconds: UInt64(index) * 1_000_000, revision: UInt32(index % 11),
                           ruleID: index % 7 == 0 ? 0 : RuleID(objectIndex: UInt32(4 + index % 3), direction: .ingress, rule: index % 300).rawValue,
                           podID: UInt32(index % 5 + 2), direction: index % 2 == 0 ? .ingress : .egress,
                           tier: index % 7 == 0 ? .podDefault : .networkPolicy, firstFromHigh: index % 4 == 0)
        }
        Self.expectRowsReadAsAlone(layout, entries.map { $0.encode() })
    }

    /// The AWS agent's conntrack likewise (the pod behind an interface, a state code's words).
    @Test func theAgentsConntrackRowsThatRepeatFieldsReadAsTheyWouldAlone() throws {
        var context = DecodeContext()
        context.awsPods = [7: "shop-web-0-abcde", 8: String(repeating: "p", count: 600)]
        context.monotonicNow = 10_000_000_000
        let entries = (0..<3000).map { index in
            var key = aws_conntrack_key()
            key.src_ip = UInt32(index % 251) << 24 | 0x12c6  // 198.18.0.x in network order
            key.src_port = UInt16(index)
            key.dest_ip = 0x0a_00_13_c6  // 198.19.0.10
            key.dest_port = 443
            key.protocol = [6, 17, 1][index % 3]
            key.owner_ip = key.dest_ip
            key.ifindex = UInt32(6 + index % 4)
            var value = aws_conntrack_value()
            value.val = UInt64(index % 9) | UInt64(index % 5) << 32
            value.last_seen = UInt64(index) * 1_000_000
            return (withUnsafeBytes(of: key) { Array($0) }, withUnsafeBytes(of: value) { Array($0) })
        }
        Self.expectRowsReadAsAlone(AWSConntrackLayout(context: context), entries)
    }

    /// Every row `layout` writes for `entries` through one writer reads byte for byte as the
    /// same entry written alone, in JSON and as a table.
    static func expectRowsReadAsAlone(_ layout: some MapLayout, _ entries: [(key: [UInt8], value: [UInt8])]) {
        for format in [RecordWriter.Format.json, .table] {
            func lines(_ entries: ArraySlice<(key: [UInt8], value: [UInt8])>) -> [Substring] {
                var text = ""
                let writer = RecordWriter(columns: layout.columns, format: format, headers: false) { text += String(decoding: $0, as: UTF8.self) }
                for entry in entries {
                    entry.key.withUnsafeBytes { key in entry.value.withUnsafeBytes { value in layout.decode(key: key, value: value, into: writer) } }
                }
                writer.finish()
                let rows = text.split(separator: "\n")
                return format == .json ? rows.dropFirst().dropLast().map { $0.hasSuffix(",") ? $0.dropLast() : $0 } : rows
            }
            let together = lines(entries[...])
            #expect(together.count == entries.count)
            for index in entries.indices where together[index] != lines(entries[index...index]).first {
                Issue.record("\(format) row \(index) differs from the entry written alone:\n\(together[index])\n\(lines(entries[index...index]).first ?? "")")
                break
            }
        }
    }

    @Test func aTrieEntryReadsAsOneRowPerRule() throws {
        let prefix = try #require(IPPrefix.parse("2001:db8::/32")?.prefix)
        let rules = [PortRule(ruleID: RuleID(objectIndex: 5, direction: .ingress, rule: 0).rawValue, protocolNumber: 6, portStart: 8000, portEnd: 8100),
                     PortRule(ruleID: 0, protocolNumber: IPProtocolNumber.any, tier: .admin, priority: 10, action: .deny)]
        let rows = try Self.rows(PolicyTrieLayout(context: Self.context), key: LPMKeyCodec.encode(prefix), value: RuleSetCodec.encode(rules))
        #expect(rows.map { $0["cidr"] as? String } == ["2001:db8::/32", "2001:db8::/32"])
        #expect(rows.map { $0["ports"] as? String } == ["8000-8100", "any"] && rows.map { $0["proto"] as? String } == ["tcp", "any"])
        #expect(rows.map { $0["action"] as? String } == ["accept", "deny"] && rows.map { $0["tier"] as? String } == ["network-policy", "admin"])
        #expect(rows[0]["policy"] as? String == "shop/web" && rows[1]["priority"] as? Int == 10)
        #expect(try Self.rows(PolicyTrieLayout(context: Self.context), key: [1, 2, 3], value: []).isEmpty, "bytes of another size make no row")
    }

    @Test func indexesOfArraysReadAsTheirReadersAndCounters() throws {
        let policies = PoliciesLayout(context: Self.context, roles: [TrieIndex(rawValue: 15)!: .spare])
        let policy = try #require(try Self.rows(policies, key: Self.bytes(UInt32(12)), value: Self.bytes(UInt32(42))).first)
        #expect(policy["pod"] as? String == "shop/web-0" && policy["pods"] as? Int == 2 && policy["direction"] as? String == "egress")
        #expect(policy["mapID"] as? Int == 42 && policy["role"] is NSNull)
        let orphan = try #require(try Self.rows(policies, key: Self.bytes(UInt32(13)), value: Self.bytes(UInt32(43))).first)
        #expect(orphan["pods"] as? Int == 0 && orphan["pod"] is NSNull && orphan["role"] is NSNull, "a trie no record names has no reader")
        #expect(try Self.rows(policies, key: Self.bytes(UInt32(14)), value: Self.bytes(UInt32(0))).isEmpty)
        let spare = try #require(try Self.rows(policies, key: Self.bytes(UInt32(15)), value: Self.bytes(UInt32(44))).first)
        #expect(spare["pods"] as? Int == 0 && spare["role"] as? String == "spare", "a spare says so")

        let digest = PolicyDigest(of: [:])
        let digestRow = try #require(try Self.rows(PolicyDigestsLayout(), key: Self.bytes(UInt32(12)),
                                                   value: TrieDigestRecord(mapID: 42, digest: digest).encode()).first)
        #expect(digestRow["mapID"] as? Int == 42 && digestRow["digest"] as? String == digest.description)
        #expect(try Self.rows(PolicyDigestsLayout(), key: Self.bytes(UInt32(13)), value: [UInt8](repeating: 0, count: TrieDigestRecord.size)).isEmpty)
        let spareRecord = try #require(try Self.rows(PolicyDigestsLayout(), key: Self.bytes(UInt32(15)),
                                                     value: TrieDigestRecord(mapID: 44, role: .spare).encode()).first)
        #expect(spareRecord["digest"] as? String == "spare", "a role, not 64 hex digits of zeros and a one")

        // Two CPUs: (3 packets, 300 bytes) and (4, 400).
        let counter = CounterIndex(podID: 3, direction: .ingress, verdict: .allow)
        let perCPU = [3, 300, 4, 400].flatMap { Self.bytes(UInt64($0)) }
        var context = Self.context
        context.perCPU = true
        let counted = try #require(try Self.rows(CountersLayout(context: context), key: Self.bytes(counter.rawValue), value: perCPU).first)
        #expect(counted["pod"] as? String == "shop/web-0" && counted["direction"] as? String == "ingress" && counted["verdict"] as? String == "allow")
        #expect(counted["packets"] as? Int == 7 && counted["bytes"] as? Int == 700 && counted["packetsPerCPU"] as? [Int] == [3, 4])
        #expect(CounterIndex(rawValue: counter.rawValue) == counter)

        let stat = try #require(try Self.rows(StatsLayout(context: Self.context), key: Self.bytes(DatapathStat.conntrackFull.rawValue),
                                              value: Self.bytes(UInt64(2)) + Self.bytes(UInt64(5))).first)
        #expect(stat["stat"] as? String == "conntrack-full" && stat["count"] as? Int == 7)

        let generation = try #require(try Self.rows(GenerationsLayout(), key: Self.bytes(DatapathGeneration.grants.rawValue), value: Self.bytes(UInt64(12))).first)
        #expect(generation["map"] as? String == "grants" && generation["changes"] as? Int == 12)
    }

    @Test func aFragmentVerdictReadsAsItsFlow() throws {
        var key = nf_fragment_key()
        key.ifindex = 7
        key.id = 4242
        key.family = 6
        key.protocol = 17
        IPAddress("2001:db8::1")!.store(in: &key.saddr)
        IPAddress("2001:db8::2")!.store(in: &key.daddr)
        var value = nf_fragment_value()
        value.sport = 5353
        value.dport = 53
        value.verdict = Verdict.allow.rawValue
        value.tier = Tier.baseline.rawValue
        let row = try #require(try Self.rows(FragmentsLayout(context: Self.context), key: key.bytes, value: value.bytes).first)
        #expect(row["id"] as? Int == 4242 && row["proto"] as? String == "udp" && row["source"] as? String == "2001:db8::1")
        #expect(row["sourcePort"] as? Int == 5353 && row["destinationPort"] as? Int == 53)
        #expect(row["verdict"] as? String == "allow" && row["tier"] as? String == "baseline")
    }

    @Test func theAgentsSlotsReadEveryUsedOneWithTheirTierAndAction() throws {
        // Slot 0 TCP 80; slot 3 (after empty ones) RESERVED; cluster: Baseline priority 5 Pass.
        var slots = [UInt8](repeating: 0, count: AWSAgent.policyValueBytes)
        slots.replaceSubrange(0..<12, with: [6, 80, 0].flatMap { Self.bytes(UInt32($0)) })
        slots.replaceSubrange(36..<48, with: [255, 0, 0].flatMap { Self.bytes(UInt32($0)) })
        let key = Self.bytes(UInt32(24)) + [198, 18, 7, 0]
        let rows = try Self.rows(AWSPolicyLayout(context: DecodeContext(), clusterPolicy: false), key: key, value: slots)
        #expect(rows.map { $0["slot"] as? Int } == [0, 3] && rows.map { $0["cidr"] as? String } == ["198.18.7.0/24", "198.18.7.0/24"])
        #expect(rows.map { $0["action"] as? String } == ["accept", "deny"] && rows.map { $0["proto"] as? String } == ["tcp", "reserved"])

        var cluster = [UInt8](repeating: 0, count: AWSAgent.clusterPolicyValueBytes)
        cluster.replaceSubrange(0..<16, with: [254, (2000 + 5) * 10 + 2, 0, 0].flatMap { Self.bytes(UInt32($0)) })
        let pass = try #require(try Self.rows(AWSPolicyLayout(context: DecodeContext(), clusterPolicy: true), key: key, value: cluster).first)
        #expect(pass["tier"] as? String == "baseline" && pass["priority"] as? Int == 5 && pass["action"] as? String == "pass" && pass["proto"] as? String == "any")
    }

    @Test func theAgentsConntrackCodeReadsAsTheStatePair() {
        let pairs: [(UInt64, AWSPodState, AWSPodState)] = [(2, .defaultAllow, .defaultAllow), (3, .defaultAllow, .defaultDeny),
                                                           (4, .defaultAllow, .policiesApplied), (5, .policiesApplied, .defaultAllow),
                                                           (6, .policiesApplied, .defaultDeny), (7, .policiesApplied, .policiesApplied)]
        for (code, networkPolicy, clusterPolicy) in pairs {
            let states = AWSConntrackState(code: code).states
            #expect(states?.networkPolicy == networkPolicy && states?.clusterPolicy == clusterPolicy, "code \(code)")
        }
        #expect(AWSConntrackState(code: 0).states == nil && AWSConntrackState(code: 1 | 2 << 32).description == "code 8589934593")
    }

    static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
}
