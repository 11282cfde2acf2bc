import DatapathModel
import Testing
import TestSupport

@testable import PolicyInput

@Suite struct PolicyObjectCodecTests {
    @Test func objectsRoundTrip() throws {
        let objects = try PolicyDocumentParser.parse(kubectlJSON).objects + PolicyDocumentParser.parse(kubectlYAMLDocuments).objects
        for object in objects {
            #expect(PolicyObjectCodec.decode(PolicyObjectCodec.encode(object)) == object)
        }
    }

    @Test func damagedRecordsDecodeToNilNeverTrap() throws {
        let bytes = PolicyObjectCodec.encode(try PolicyDocumentParser.parse(kubectlJSON).objects[0])
        for length in 0..<bytes.count { #expect(PolicyObjectCodec.decode(Array(bytes.prefix(length))) == nil) }
        #expect(PolicyObjectCodec.decode(bytes + [0]) == nil, "trailing bytes")
        var otherVersion = bytes
        otherVersion[0] = 99
        #expect(PolicyObjectCodec.decode(otherVersion) == nil)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var corrupt = bytes
            corrupt[Int.random(in: 1..<corrupt.count, using: &generator)] = .random(in: 0...255, using: &generator)
            _ = PolicyObjectCodec.decode(corrupt)
        }
    }
}
