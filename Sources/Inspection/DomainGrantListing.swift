import BPFKit
import DatapathModel
import DNS
import Glibc
import HostKit
import Loader
import PolicyInput

/// One pod, address and domain pattern the DNS proxy granted, in words.
public struct DomainGrantRow: Encodable, Sendable {
    public let namespace: String
    public let pod: String
    /// The domain rule's name (`github.com`, `*.example.com`); `pattern 0x…` when no applied rule names it any more.
    public let name: String
    public let address: String
    /// Seconds until new connections stop being allowed (negative: expired that long ago).
    public let expiresIn: Double
    /// The policy and rule that allow the name (`shop/allow-github egress[1]`), or `-` when none does now.
    public let rule: String

    enum CodingKeys: String, CodingKey { case namespace, pod, name, address, expiresIn = "expires_in_seconds", rule }

    public var expiresText: String {
        let seconds = Int(expiresIn.magnitude.rounded())
        return expiresIn >= 0 ? "in \(seconds)s" : "expired \(seconds)s ago"
    }
}

/// `netfence fqdn list`: grants joined with the pods and the applied rules that name their patterns.
public enum DomainGrantListing {
    public static func collect(loader: Loader) throws -> [DomainGrantRow] {
        let pods = try loader.state.pods()
        let objects = try loader.state.objects()
        let now = HostClock.monotonic.nanoseconds
        // Pattern id → its text, and (pod, pattern) → the rules naming it, from the applied objects.
        var names: [UInt64: String] = [:]
        var rules: [PodReference: [UInt64: [String]]] = [:]
        for stored in objects {
            for (position, rule) in stored.object.egress.enumerated() {
                guard let pattern = rule.domainName else { continue }
                names[pattern.id] = pattern.description
                for selected in stored.object.pods {
                    rules[selected.pod, default: [:]][pattern.id, default: []].append("\(stored.object.policyRef) egress[\(position)]")
                }
            }
        }
        var rows: [DomainGrantRow] = []
        // Grants of a detached pod are read by no packet and wait for a sweep: not listed.
        for grant in try loader.datapath.grants() {
            guard let registration = pods[grant.podID] else { continue }
            for entry in grant.patterns {
                rows.append(DomainGrantRow(
                    namespace: registration.namespace, pod: registration.name,
                    name: names[entry.pattern] ?? "pattern 0x" + String(entry.pattern, radix: 16),
                    address: grant.address.description,
                    expiresIn: (Double(entry.expiresNanoseconds) - Double(now)) / 1e9,
                    rule: rules[registration.pod]?[entry.pattern]?.joined(separator: ", ") ?? "-"))
            }
        }
        return rows.sorted { ($0.namespace, $0.pod, $0.name, $0.address) < ($1.namespace, $1.pod, $1.name, $1.address) }
    }
}
