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

    /// Without rules: the same object with none, and a damaged header still fails.
    @Test func summariesLeaveOutTheRules() throws {
        for object in try PolicyDocumentParser.parse(kubectlJSON).objects + PolicyDocumentParser.parse(kubectlYAMLDocuments).objects {
            let summary = try #require(PolicyObjectCodec.decode(PolicyObjectCodec.encode(object), rules: false))
            #expect(summary.key == object.key && summary.policyRef == object.policyRef && summary.isolation == object.isolation
                    && summary.pods == object.pods && summary.tier == object.tier && summary.priority == object.priority && summary.mode == object.mode)
            #expect(summary.ingress.isEmpty && summary.egress.isEmpty)
        }
        let bytes = PolicyObjectCodec.encode(try PolicyDocumentParser.parse(kubectlJSON).objects[0])
        #expect(PolicyObjectCodec.decode(Array(bytes.prefix(12)), rules: false) == nil)
    }

    /// A record a loader of the previous version stored (addresses and prefixes as text) reads as the same object.
    @Test func versionTwoRecordsStillRead() throws {
        let object = try PolicyDocumentParser.parse(kubectlJSON).objects[0]
        var record: [UInt8] = [2, 0]
        func count(_ value: Int) { withUnsafeBytes(of: UInt32(value)) { record += $0 } }
        func text(_ value: String) { count(value.utf8.count); record += Array(value.utf8) }
        text(object.key.namespace); text(object.key.name); text(object.policyRef)
        record.append(3)  // isolation: ingress and egress
        count(object.pods.count)
        for pod in object.pods {
            text(pod.pod.namespace); text(pod.pod.name); text(pod.podIP?.description ?? ""); text(pod.hostIP?.description ?? "")
        }
        record += [0, 0, 0, 0]  // no tier, priority 0, enforced
        for rules in [object.ingress, object.egress] {
            count(rules.count)
            for rule in rules {
                text(rule.cidr?.description ?? "")
                count(rule.except.count)
                rule.except.forEach { text($0.description) }
                count(rule.ports.count)
                for port in rule.ports {
                    record.append(port.protocolNumber)
                    withUnsafeBytes(of: port.port ?? 0) { record += $0 }
                    withUnsafeBytes(of: port.endPort ?? 0) { record += $0 }
                }
                text(rule.domainName?.description ?? "")
                record.append(0)  // accept
            }
        }
        #expect(PolicyObjectCodec.decode(record) == object)
    }
}
