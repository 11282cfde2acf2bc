import DatapathModel
import Foundation
import PolicyInput

/// A verdict event in words: when, which pod, which flow, what was decided and
/// by which policy. Its field names are the `-o json` interface.
public struct DecodedEvent: Sendable, Encodable, Equatable {
    public let time: Date
    /// `namespace/name`, or `ifindex N` for an interface no pod owns any more.
    public let pod: String
    public let podNamespace: String?
    public let interface: String?
    public let direction: String
    public let family: String
    public let proto: String
    public let source: IPAddress
    public let sourcePort: UInt16
    public let destination: IPAddress
    public let destinationPort: UInt16
    public let verdict: String
    public let tier: String
    /// `namespace/name` of the PolicyEndpoint's policyRef, the cluster policy's
    /// name, `default` when the pod default decided, `conntrack` / `parser`
    /// when no tier did.
    public let policy: String
    /// The rule's index in the object's ingress or egress list.
    public let rule: Int?
    public let reason: String
    public let bytes: UInt32
    public let revision: UInt32
}

/// What the loader knows that turns ids into names.
public struct Attribution: Sendable {
    /// Pod id → registration.
    public var pods: [UInt32: PodRegistration]
    /// Object index → object.
    public var objects: [UInt32: PolicyObject]

    public init(pods: [UInt32: PodRegistration], objects: [UInt32: PolicyObject]) {
        self.pods = pods
        self.objects = objects
    }

    /// `event` in words; `bootToWall` converts its CLOCK_MONOTONIC stamp.
    public func decode(_ event: VerdictEvent, monotonicToWall: (UInt64) -> Date) -> DecodedEvent {
        let registration = pods[event.podID].flatMap { $0.ifindex == event.ifindex ? $0 : nil }
        let policy: String
        var rule: Int?
        switch event.tier {
        case .podDefault:
            policy = "default"
        case .none:
            policy = event.reason == .unparseable || event.reason == .noFirstFragment ? "parser" : "conntrack"
        default:
            if let id = RuleID(rawValue: event.ruleID), let object = objects[id.objectIndex] {
                policy = object.policyRef
                rule = id.rule
            } else if event.tier == .networkPolicy && event.ruleID == 0 {
                policy = "isolation"  // selected by a NetworkPolicy, no rule allowed it
            } else {
                policy = "rule \(event.ruleID)"
            }
        }
        return DecodedEvent(
            time: monotonicToWall(event.timestampNanoseconds),
            pod: registration.map { "\($0.namespace)/\($0.name)" } ?? "ifindex \(event.ifindex)",
            podNamespace: registration?.namespace, interface: registration?.interface,
            direction: event.direction.description, family: event.family == 6 ? "ipv6" : "ipv4",
            proto: ProtocolName.of(event.protocolNumber),
            source: event.source, sourcePort: event.sourcePort,
            destination: event.destination, destinationPort: event.destinationPort,
            verdict: event.verdict == .allow ? "allow" : "deny", tier: event.tier.description,
            policy: policy, rule: rule, reason: Self.reasonName(event.reason), bytes: event.length, revision: event.revision)
    }

    static func reasonName(_ reason: Reason) -> String {
        switch reason {
        case .policy: "policy"
        case .reevaluated: "re-evaluated"
        case .related: "related"
        case .fragment: "fragment"
        case .unparseable: "unparseable"
        case .noFirstFragment: "no-first-fragment"
        }
    }
}

/// Protocol names as people write them.
public enum ProtocolName {
    public static func of(_ number: UInt8) -> String {
        switch number {
        case IPProtocolNumber.tcp: "tcp"
        case IPProtocolNumber.udp: "udp"
        case IPProtocolNumber.sctp: "sctp"
        case IPProtocolNumber.icmp: "icmp"
        case IPProtocolNumber.icmpv6: "icmpv6"
        default: "proto-\(number)"
        }
    }
}

/// Converts the datapath's CLOCK_MONOTONIC stamps to wall-clock dates.
public struct MonotonicClock: Sendable {
    let offset: Double

    /// Reads both clocks now; the offset holds until the wall clock is stepped.
    public init() {
        var monotonic = timespec(), realtime = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        clock_gettime(CLOCK_REALTIME, &realtime)
        offset = (Double(realtime.tv_sec) + Double(realtime.tv_nsec) / 1e9) - (Double(monotonic.tv_sec) + Double(monotonic.tv_nsec) / 1e9)
    }

    public func date(_ nanoseconds: UInt64) -> Date {
        Date(timeIntervalSince1970: offset + Double(nanoseconds) / 1e9)
    }
}

/// `--pod`, `--verdict`, `--ip` … combined with AND.
public struct EventFilter: Sendable {
    public var pod: String?
    public var namespace: String?
    public var verdict: String?
    public var direction: String?
    public var prefix: IPPrefix?
    public var port: UInt16?
    public var proto: String?
    public var tier: String?
    public var policy: String?

    public init() {}

    public func matches(_ event: DecodedEvent) -> Bool {
        if let pod, event.pod != pod { return false }
        if let namespace, event.podNamespace != namespace { return false }
        if let verdict, event.verdict != verdict { return false }
        if let direction, event.direction != direction { return false }
        if let prefix, !prefix.contains(event.source), !prefix.contains(event.destination) { return false }
        if let port, event.sourcePort != port, event.destinationPort != port { return false }
        if let proto, event.proto != proto { return false }
        if let tier, event.tier != tier { return false }
        if let policy, event.policy != policy { return false }
        return true
    }
}
