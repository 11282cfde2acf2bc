import DatapathModel
import Testing

struct PolicyDigestTests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    /// FIPS 180-4's examples (and the empty message): the padding's edge cases are 55, 56 and 64 bytes.
    @Test func sha256GivesTheStandardsDigests() {
        #expect(Self.hex(SHA256.digest([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.hex(SHA256.digest(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Self.hex(SHA256.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(Self.hex(SHA256.digest([UInt8](repeating: 0x61, count: 1_000_000)))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func feedingInPiecesGivesTheSameDigest() {
        var generator = SystemRandomNumberGenerator()
        let message = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for cut in [0, 1, 55, 56, 63, 64, 65, 500, 999] {
            var hasher = SHA256()
            hasher.update(Array(message[..<cut]))
            hasher.update(Array(message[cut...]))
            #expect(hasher.finish() == SHA256.digest(message), "cut at \(cut)")
        }
    }

    @Test func aPolicysDigestIsItsContentNotItsOrder() throws {
        let rule = PortRule(ruleID: 7, protocolNumber: 6, portStart: 80, portEnd: 80)
        let prefixes = try (0..<200).map { try #require(IPPrefix.parse("198.18.\($0).0/24")?.prefix) }
        var forward: [IPPrefix: [PortRule]] = [:], backward: [IPPrefix: [PortRule]] = [:]
        for prefix in prefixes { forward[prefix] = [rule] }
        for prefix in prefixes.reversed() { backward[prefix] = [rule] }
        #expect(CompiledPolicy(entries: forward).digest == CompiledPolicy(entries: backward).digest)

        var otherPort = forward
        otherPort[prefixes[100]] = [PortRule(ruleID: 7, protocolNumber: 6, portStart: 81, portEnd: 81)]
        var otherRuleID = forward
        otherRuleID[prefixes[100]] = [PortRule(ruleID: 8, protocolNumber: 6, portStart: 80, portEnd: 80)]
        var moreRules = forward
        moreRules[prefixes[100]] = [rule, rule]
        var otherPrefix = forward
        otherPrefix[prefixes[100]] = nil
        otherPrefix[try #require(IPPrefix.parse("198.18.100.0/25")?.prefix)] = [rule]
        let digests = [forward, otherPort, otherRuleID, moreRules, otherPrefix, [:]].map { CompiledPolicy(entries: $0).digest }
        #expect(Set(digests).count == digests.count, "each change of content changes the digest")
        #expect(CompiledPolicy(entries: forward) != CompiledPolicy(entries: otherPort))
    }
}
