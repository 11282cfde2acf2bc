import CNetfenceABI
import Testing

@testable import DatapathModel

/// The Swift codecs and the C header must agree byte for byte: sizes and
/// offsets are pinned here against the structs the BPF programs use.
@Suite struct ABILayoutTests {
    @Test func structSizesMatchTheHeader() {
        #expect(MemoryLayout<nf_pod>.size == 16 && PodRecord.size == 16)
        #expect(MemoryLayout<nf_lpm_key>.size == 24 && LPMKeyCodec.size == 24)
        #expect(MemoryLayout<nf_lpm_key>.offset(of: \.family) == 4 && MemoryLayout<nf_lpm_key>.offset(of: \.address) == 5)
        #expect(MemoryLayout<nf_port_rule>.size == 16 && nf_port_rule.size == 16)
        #expect(MemoryLayout<nf_rule_set>.size == 8 + 16 * DatapathLimits.rulesPerPrefix && RuleSetCodec.size == 520)
        #expect(MemoryLayout<nf_conntrack_key>.size == 44)
        #expect(MemoryLayout<nf_conntrack_value>.size == 24)
        #expect(MemoryLayout<nf_conntrack_value>.offset(of: \.pod_id) == 16 && MemoryLayout<nf_conntrack_value>.offset(of: \.flags) == 22)
        #expect(MemoryLayout<nf_event>.size == 80 && VerdictEvent.size == 80)
        #expect(MemoryLayout<nf_settings>.size == 16 && ABISizes.settings == 16)
        #expect(MemoryLayout<nf_event>.offset(of: \.captured) == 70 && MemoryLayout<nf_event_limit>.size == 40)
        #expect(MemoryLayout<nf_domain_rule_key>.size == 16 && DomainRuleKey.size == 16)
        #expect(MemoryLayout<nf_domain_grant_key>.size == 20 && DomainGrant.keySize == 20)
        #expect(MemoryLayout<nf_domain_grant>.size == 8 + 16 * DatapathLimits.patternsPerGrant && DomainGrant.valueSize == 136)
        #expect(MemoryLayout<nf_dns_proxy>.size == 16 && DNSProxyRecord.size == 16)
        #expect(MemoryLayout<nf_root_marker>.size == 24 && RootMarker.size == 24)
    }

    @Test func theRootMarkerLandsWhereTheCStructReadsIt() {
        let marker = RootMarker(createdNanoseconds: 1_234_567, attachment: .tcx)
        marker.encode().withUnsafeBytes { raw in
            let c = raw.loadUnaligned(as: nf_root_marker.self)
            #expect(c.magic == NF_ROOT_MAGIC && c.created_ns == 1_234_567 && c.abi_version == NF_ABI_VERSION && c.attachment == NF_ATTACH_TCX.rawValue)
        }
        #expect(RootMarker.decode(marker.encode()) == marker)
        #expect(Attachment.tc.rawValue == NF_ATTACH_TC.rawValue && Attachment.tcx.rawValue == NF_ATTACH_TCX.rawValue
            && Attachment.tcThenTCX.rawValue == NF_ATTACH_TC_THEN_TCX.rawValue && Attachment.allCases.count == 3)
        var unknown = marker.encode()
        unknown[20] = 9  // a newer binary's way of attaching: read as filters, the way every netfence knows
        #expect(RootMarker.decode(unknown)?.attachment == .tc)
        #expect(RootMarker.decode([UInt8](repeating: 0, count: RootMarker.size)) == nil, "an unwritten marker is none")
    }

    @Test func domainValuesLandWhereTheCStructsReadThem() {
        let key = DomainRuleKey(podID: 7, slot: 1, pattern: 0xfeed_beef_0102_0304)
        key.encode().withUnsafeBytes { raw in
            let c = raw.loadUnaligned(as: nf_domain_rule_key.self)
            #expect(c.pod_id == 7 && c.slot == 1 && c.pattern == 0xfeed_beef_0102_0304)
        }
        #expect(DomainRuleKey.decode(key.encode()) == key)

        let grant = DomainGrant(podID: 3, address: IPAddress("198.18.7.9")!, patterns: [
            .init(pattern: 11, expiresNanoseconds: 5_000_000_000), .init(pattern: 12, expiresNanoseconds: 6_000_000_000),
        ])
        grant.key.withUnsafeBytes { raw in
            let c = raw.loadUnaligned(as: nf_domain_grant_key.self)
            #expect(c.pod_id == 3 && c.address.10 == 0xff && c.address.12 == 198 && c.address.15 == 9)
        }
        grant.encodeValue().withUnsafeBytes { raw in
            let c = raw.loadUnaligned(as: nf_domain_grant.self)
            #expect(c.count == 2 && c.patterns.0.pattern == 11 && c.patterns.1.expires_ns == 6_000_000_000 && c.patterns.2.pattern == 0)
        }
        #expect(DomainGrant.decode(key: grant.key, value: grant.encodeValue()) == grant)

        let proxy = DNSProxyRecord(pid: 4242, port: 5353, startedNanoseconds: 99)
        proxy.encode().withUnsafeBytes { raw in
            let c = raw.loadUnaligned(as: nf_dns_proxy.self)
            #expect(c.pid == 4242 && c.port == 5353 && c.started_ns == 99)
        }
        #expect(DNSProxyRecord.decode(proxy.encode()) == proxy)

        let record = PodRecord(podID: 1, hasDomainRules: true)
        #expect(record.encode()[11] == UInt8(NF_POD_DOMAIN_RULES) && PodRecord.decode(record.encode()) == record)
    }

    @Test func offsetsMatchTheHeader() {
        #expect(MemoryLayout<nf_port_rule>.offset(of: \.port_start) == 4)
        #expect(MemoryLayout<nf_port_rule>.offset(of: \.priority) == 8)
        #expect(MemoryLayout<nf_port_rule>.offset(of: \.protocol) == 10)
        #expect(MemoryLayout<nf_port_rule>.offset(of: \.tier) == 11)
        #expect(MemoryLayout<nf_port_rule>.offset(of: \.action) == 12)
        #expect(MemoryLayout<nf_pod>.offset(of: \.slot) == 8)
        #expect(MemoryLayout<nf_pod>.offset(of: \.state) == 9)
        #expect(MemoryLayout<nf_event>.offset(of: \.revision) == 24)
        #expect(MemoryLayout<nf_event>.offset(of: \.saddr) == 28)
        #expect(MemoryLayout<nf_event>.offset(of: \.sport) == 60)
        #expect(MemoryLayout<nf_event>.offset(of: \.direction) == 64)
        #expect(MemoryLayout<nf_event>.offset(of: \.reason) == 69)
    }

    @Test func everyPodDirectionHasALiveAndABuildingTrie() {
        #expect(TrieIndex.count == DatapathLimits.pods * Direction.allCases.count * 2)
        #expect(MemoryLayout<nf_pod>.offset(of: \.trie) == 12 && MemoryLayout<nf_pod>.size == 16)
    }

    @Test func encodedValuesLandWhereTheCStructsReadThem() {
        let rule = PortRule(ruleID: 0x0102_0304, protocolNumber: 6, portStart: 80, portEnd: 90, tier: .admin, priority: 7, action: .pass)
        let bytes = RuleSetCodec.encode([rule])
        bytes.withUnsafeBytes { raw in
            let set = raw.loadUnaligned(as: nf_rule_set.self)
            #expect(set.count == 1)
            #expect(set.rules.0.rule_id == 0x0102_0304 && set.rules.0.port_start == 80 && set.rules.0.port_end == 90)
            #expect(set.rules.0.priority == 7 && set.rules.0.protocol == 6 && set.rules.0.tier == 1 && set.rules.0.action == 2)
        }
        #expect(RuleSetCodec.decode(bytes) == [rule])

        let record = PodRecord(podID: 9, revision: 3, slot: 1, states: [.ingress: .policiesApplied, .egress: .defaultDeny],
                               tries: [.egress: TrieIndex(rawValue: 700)!])
        record.encode().withUnsafeBytes { raw in
            let pod = raw.loadUnaligned(as: nf_pod.self)
            #expect(pod.pod_id == 9 && pod.revision == 3 && pod.slot == 1 && pod.state.0 == 2 && pod.state.1 == 1)
            #expect(pod.trie.0 == 0xffff && pod.trie.1 == 700, "no ingress trie is NF_NO_TRIE")
        }
        #expect(PodRecord.decode(record.encode()) == record)
        var pastTheArray = record.encode()
        pastTheArray[12] = 0x00; pastTheArray[13] = 0x40  // trie index 16384: no such index, and not NF_NO_TRIE
        #expect(PodRecord.decode(pastTheArray) == nil, "a record naming an index past policies is not a record this ABI writes")
        #expect(TrieIndex(rawValue: UInt16(TrieIndex.count)) == nil && TrieIndex(rawValue: UInt16(TrieIndex.count - 1)) != nil)
        let digest = PolicyDigest(of: [prefixForDigest: [rule]])
        #expect(TrieDigestRecord.decode(TrieDigestRecord(mapID: 77, digest: digest).encode()) == TrieDigestRecord(mapID: 77, digest: digest))
        #expect(TrieDigestRecord.decode([UInt8](repeating: 0, count: TrieDigestRecord.size)) == nil, "an index never written")
        #expect(TrieDigestRecord.decode(TrieDigestRecord(mapID: 77, digest: digest).encode())?.role == nil, "a policy's digest is no role")
        for (role, value) in [(TrieRole.spare, NF_TRIE_SPARE), (.arriving, NF_TRIE_ARRIVING), (.cooling, NF_TRIE_COOLING)] {
            #expect(UInt32(role.rawValue) == value.rawValue, "\(role) is the header's value")
            let bytes = TrieDigestRecord(mapID: 9, role: role).encode()
            #expect(bytes[4..<35].allSatisfy { $0 == 0 } && bytes[35] == role.rawValue, "31 zero bytes, then the role")
            #expect(TrieDigestRecord.decode(bytes)?.role == role)
        }

        let prefix = prefixForDigest
        // 8 family bits + 96 mapped bits + 15
        #expect(LPMKeyCodec.encode(prefix) == [119, 0, 0, 0, 4] + [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 198, 18, 0, 0, 0, 0, 0])
        #expect(LPMKeyCodec.decode(LPMKeyCodec.encode(prefix)) == prefix)
        let any6 = IPPrefix.parse("::/0")!.prefix
        #expect(LPMKeyCodec.encode(any6) == [8, 0, 0, 0, 6] + [UInt8](repeating: 0, count: 19), "IPv6 ::/0 fixes the family byte only")
        #expect(LPMKeyCodec.decode(LPMKeyCodec.encode(any6)) == any6)
    }

    private var prefixForDigest: IPPrefix { IPPrefix.parse("198.18.0.0/15")!.prefix }

    /// A ring-buffer record as the datapath writes it, decoded field by field.
    @Test func aGoldenEventDecodes() {
        var golden = [UInt8](repeating: 0, count: 80)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { for (i, byte) in $0.enumerated() { golden[offset + i] = byte } }
        }
        put(UInt64(123_456_789), at: 0)
        put(UInt32(7), at: 8)
        put(UInt32(2), at: 12)
        put(UInt32(401), at: 16)
        put(UInt32(74), at: 20)
        put(UInt32(5), at: 24)
        golden.replaceSubrange(28..<44, with: IPAddress("198.18.1.10")!.bytes)
        golden.replaceSubrange(44..<60, with: IPAddress("198.18.20.1")!.bytes)
        put(UInt16(5353), at: 60)
        put(UInt16(53), at: 62)
        golden[64...69] = [1, 4, 17, 0, 2, 0]
        let event = VerdictEvent.decode(golden)
        #expect(event == VerdictEvent(timestampNanoseconds: 123_456_789, ifindex: 7, podID: 2, ruleID: 401, length: 74, revision: 5,
                                      source: IPAddress("198.18.1.10")!, destination: IPAddress("198.18.20.1")!,
                                      sourcePort: 5353, destinationPort: 53, direction: .egress, family: 4,
                                      protocolNumber: 17, verdict: .deny, tier: .networkPolicy, reason: .policy, captured: 0))
        #expect(VerdictEvent.decode(Array(golden.prefix(79))) == nil, "a short record is refused, not read past")
        // A capture: the record is the event and exactly the bytes it says it carries.
        var captured = golden + [0xaa, 0xbb, 0xcc]
        captured[70] = 3
        #expect(VerdictEvent.decode(captured)?.captured == 3)
        #expect(captured.withUnsafeBytes { Array(VerdictEvent.packet(in: $0)) } == [0xaa, 0xbb, 0xcc])
        #expect(VerdictEvent.decode(Array(captured.dropLast())) == nil && VerdictEvent.decode(captured + [0]) == nil,
                "a record whose length disagrees with its capture is refused")
        var unknownTier = golden
        unknownTier[68] = 99
        #expect(VerdictEvent.decode(unknownTier) == nil)
    }
}
