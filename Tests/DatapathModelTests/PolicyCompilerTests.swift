import Testing

@testable import DatapathModel

func prefix(_ text: String) -> IPPrefix { IPPrefix.parse(text)!.prefix }

@Suite struct AddressTests {
    @Test func prefixesClearEveryHostBit() {
        // Against a bit-by-bit mask of the 16 bytes, at every length, for an all-ones address.
        let ones = IPAddress(bytes: [UInt8](repeating: 0xff, count: 16))
        for length in 0...128 {
            let expected = (0..<16).map { index -> UInt8 in
                let kept = max(0, min(8, length - index * 8))
                return kept == 0 ? 0 : ~(0xff >> kept)
            }
            #expect(IPPrefix(address: ones, length: length, family: .ipv6).address.bytes == expected, "length \(length)")
        }
        #expect(IPPrefix.parse("198.18.255.255/17")!.prefix.description == "198.18.128.0/17")
    }

    @Test func prefixesParseCanonicalizeAndPrint() {
        let parsed = IPPrefix.parse("10.1.2.3/8")!
        #expect(!parsed.wasCanonical)
        #expect(parsed.prefix.description == "10.0.0.0/8")
        #expect(IPPrefix.parse("2001:db8::1/32")!.prefix.description == "2001:db8::/32")
        #expect(IPPrefix.parse("198.18.0.7")!.prefix.description == "198.18.0.7/32")
        for bad in ["198.18.0.0/33", "2001:db8::/129", "198.18.0.0/-1", "198.18.0.0/8x", "not an address", "198.18.0.0/", ""] {
            #expect(IPPrefix.parse(bad) == nil, "\(bad)")
        }
        #expect(prefix("198.18.0.0/15").contains(IPAddress("198.19.255.255")!, family: .ipv4))
        #expect(!prefix("198.18.0.0/15").contains(IPAddress("198.20.0.0")!, family: .ipv4))
        #expect(!prefix("0.0.0.0/0").contains(IPAddress("2001:db8::1")!, family: .ipv6), "IPv4 any is not IPv6 any")
    }

    @Test func aPrefixNeverContainsTheOtherFamily() {
        let v4 = IPAddress("198.18.0.1")!
        for v6 in ["::/0", "::/1", "::ffff:0:0/96", "::ffff:198.18.0.0/112"] {
            #expect(!prefix(v6).contains(v4, family: .ipv4), "\(v6) holds no IPv4 address")
            #expect(!prefix(v6).contains(prefix("198.18.0.0/16")), "\(v6) holds no IPv4 prefix")
        }
        #expect(prefix("::ffff:198.18.0.0/112").isIPv4Mapped && !prefix("::/0").isIPv4Mapped && !prefix("198.18.0.0/16").isIPv4Mapped)
        #expect(prefix("::ffff:198.18.0.0/112").description == "::ffff:198.18.0.0/112", "IPv6 written as IPv6")
        #expect(prefix("::ffff:198.18.0.0/112").contains(v4, family: .ipv6), "an IPv6 packet with a mapped address is IPv6")
        #expect(!prefix("0.0.0.0/0").contains(prefix("::/0")) && prefix("0.0.0.0/0") != prefix("::ffff:0:0/96"))

        let policy = try! PolicyCompiler.compile([
            PolicyRule(ruleID: 1, peer: prefix("::/0"), tier: .admin, priority: 1, action: .deny),
            PolicyRule(ruleID: 2, peer: prefix("198.18.0.0/16")),
        ])
        #expect(policy.rules(for: v4)?.map(\.ruleID) == [2], "the IPv4 entry carries no IPv6 rule")
        #expect(policy.rules(for: IPAddress("2001:db8::1")!)?.map(\.ruleID) == [1])
        #expect(policy.rules(for: IPAddress("198.18.0.1")!, family: .ipv6)?.map(\.ruleID) == [1], "a mapped address in an IPv6 packet")
        let decision = PolicyEvaluator.decide(policy, state: .policiesApplied, peer: v4, family: .ipv4, protocolNumber: 6, port: 80).decision
        #expect(decision == Decision(verdict: .allow, tier: .networkPolicy, ruleID: 2), "Admin Deny of ::/0 does not bite IPv4")
    }
}

@Suite struct PolicyCompilerTests {
    @Test func enclosingRulesAreMergedIntoMoreSpecificPrefixes() throws {
        let policy = try PolicyCompiler.compile([
            PolicyRule(ruleID: 1, peer: prefix("198.18.0.0/16"), ports: [PortRange(protocolNumber: 6, start: 80)]),
            PolicyRule(ruleID: 2, peer: prefix("198.18.5.0/24"), ports: [PortRange(protocolNumber: 6, start: 443)]),
        ])
        #expect(policy.entries[prefix("198.18.0.0/16")]?.map(\.ruleID) == [1])
        #expect(policy.entries[prefix("198.18.5.0/24")]?.map(\.ruleID) == [1, 2])
        #expect(policy.rules(for: IPAddress("198.18.5.9")!)?.map(\.portStart) == [80, 443])
        #expect(policy.rules(for: IPAddress("198.18.6.9")!)?.map(\.portStart) == [80])
        #expect(policy.rules(for: IPAddress("198.19.0.1")!) == nil)
    }

    @Test func exceptHolesRemoveOnlyTheirOwnRule() throws {
        let policy = try PolicyCompiler.compile([
            PolicyRule(ruleID: 1, peer: prefix("198.18.0.0/16"), except: [prefix("198.18.9.0/24")]),
            PolicyRule(ruleID: 2, peer: prefix("198.18.0.0/16"), ports: [PortRange(protocolNumber: 17, start: 53)]),
            PolicyRule(ruleID: 3, peer: prefix("198.18.9.128/25")),
        ])
        #expect(policy.entries[prefix("198.18.9.0/24")]?.map(\.ruleID) == [2])
        #expect(policy.entries[prefix("198.18.9.128/25")]?.map(\.ruleID) == [2, 3], "a hole does not remove a rule inside it")
        let hole = PolicyEvaluator.decide(policy, state: .policiesApplied, peer: IPAddress("198.18.9.1")!, protocolNumber: 6, port: 80).decision
        #expect(hole == Decision(verdict: .deny, tier: .networkPolicy, ruleID: 0))
    }

    @Test func anExceptOutsideItsPeerIsIgnored() throws {
        let policy = try PolicyCompiler.compile([PolicyRule(ruleID: 1, peer: prefix("198.18.0.0/24"), except: [prefix("198.19.0.0/24")])])
        #expect(policy.entries.keys.sorted() == [prefix("198.18.0.0/24")])
    }

    @Test func anEmptyHoleStillShadowsItsParent() throws {
        let policy = try PolicyCompiler.compile([PolicyRule(ruleID: 1, peer: prefix("2001:db8::/32"), except: [prefix("2001:db8:1::/48")])])
        #expect(policy.entries[prefix("2001:db8:1::/48")] == [])
    }

    @Test func tooManyRulesOnOnePrefixIsAnErrorNotATruncation() {
        let rules = (0..<33).map { PolicyRule(ruleID: UInt32($0), peer: prefix("198.18.0.0/16"), ports: [PortRange(protocolNumber: 6, start: UInt16(1000 + $0))]) }
        #expect(throws: CapacityError.tooManyRules(prefix: prefix("198.18.0.0/16"), count: 33)) { try PolicyCompiler.compile(rules) }
        #expect(CapacityError.tooManyRules(prefix: prefix("198.18.0.0/16"), count: 33).description
            == "33 port rules apply to 198.18.0.0/16, more than the 32 one prefix can hold")
        #expect(throws: Never.self) { try PolicyCompiler.compile(Array(rules.prefix(32))) }
    }

    @Test func tooManyPrefixesIsAnError() {
        let rules = (0..<(DatapathLimits.prefixesPerPod + 1)).map {
            PolicyRule(ruleID: 1, peer: IPPrefix(address: IPAddress(ipv4: [198, 18, UInt8($0 >> 8 & 0xff), UInt8($0 & 0xff)]), length: 128 - Int($0 >> 16)))
        }
        #expect(throws: CapacityError.tooManyPrefixes(count: DatapathLimits.prefixesPerPod + 1)) { try PolicyCompiler.compile(rules) }
    }
}

@Suite struct PolicyEvaluatorTests {
    @Test func tiersDecideInOrder() throws {
        let policy = try PolicyCompiler.compile([
            PolicyRule(ruleID: 1, peer: prefix("198.18.0.0/16")),
            PolicyRule(ruleID: 2, peer: prefix("198.18.1.0/24"), tier: .admin, priority: 5, action: .deny),
            PolicyRule(ruleID: 3, peer: prefix("198.18.2.0/24"), tier: .baseline, priority: 5, action: .deny),
        ])
        let decide = { (peer: String, state: PodState) in
            PolicyEvaluator.decide(policy, state: state, peer: IPAddress(peer)!, protocolNumber: 6, port: 80).decision
        }
        #expect(decide("198.18.1.1", .policiesApplied) == Decision(verdict: .deny, tier: .admin, ruleID: 2))
        #expect(decide("198.18.2.1", .policiesApplied) == Decision(verdict: .allow, tier: .networkPolicy, ruleID: 1))
        #expect(decide("198.18.2.1", .defaultAllow) == Decision(verdict: .deny, tier: .baseline, ruleID: 3))
        #expect(decide("198.19.0.1", .defaultDeny) == Decision(verdict: .deny, tier: .podDefault, ruleID: 0))
        #expect(PolicyEvaluator.decide(nil, state: .defaultAllow, peer: IPAddress("198.18.1.1")!, protocolNumber: 6, port: 80).decision.verdict == .allow)
    }
}

@Suite struct PacketParserTests {
    @Test func arbitraryBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let seeds = [PacketBuilder.frame(from: IPAddress("198.18.0.1")!, to: IPAddress("198.18.0.2")!, .tcp(sourcePort: 1, destinationPort: 2)),
                     PacketBuilder.frame(from: IPAddress("2001:db8::1")!, to: IPAddress("2001:db8::2")!, .udp(sourcePort: 1, destinationPort: 2),
                                         extensions: [.hopByHop])]
        for _ in 0..<20_000 {
            var frame = seeds.randomElement(using: &generator)!
            frame = Array(frame.prefix(Int.random(in: 0...frame.count, using: &generator)))
            for _ in 0..<3 where !frame.isEmpty { frame[Int.random(in: 0..<frame.count, using: &generator)] = .random(in: 0...255, using: &generator) }
            _ = PacketParser.parse(frame)
        }
    }

    @Test func builtFramesParseBack() {
        let frame = PacketBuilder.frame(from: IPAddress("198.18.0.1")!, to: IPAddress("198.18.0.2")!, .sctp(sourcePort: 7, destinationPort: 9),
                                        ipv4Options: [0x94, 4, 0, 0])
        guard case .packet(let packet) = PacketParser.parse(frame) else { Issue.record("did not parse"); return }
        #expect(packet.flow == FlowTuple(source: IPAddress("198.18.0.1")!, destination: IPAddress("198.18.0.2")!,
                                         sourcePort: 7, destinationPort: 9, protocolNumber: IPProtocolNumber.sctp))
    }
}
