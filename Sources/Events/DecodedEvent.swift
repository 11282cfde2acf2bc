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

    public init(time: Date, pod: String, podNamespace: String?, interface: String?, direction: String, family: String,
                proto: String, source: IPAddress, sourcePort: UInt16, destination: IPAddress, destinationPort: UInt16,
                verdict: String, tier: String, policy: String, rule: Int?, reason: String, bytes: UInt32, revision: UInt32) {
        self.time = time
        self.pod = pod
        self.podNamespace = podNamespace
        self.interface = interface
        self.direction = direction
        self.family = family
        self.proto = proto
        self.source = source
        self.sourcePort = sourcePort
        self.destination = destination
        self.destinationPort = destinationPort
        self.verdict = verdict
        self.tier = tier
        self.policy = policy
        self.rule = rule
        self.reason = reason
        self.bytes = bytes
        self.revision = revision
    }
}

/// What the loader knows that turns ids into names, prepared once so that
/// decoding an event copies no registration and builds no string.
public struct Attribution: Sendable {
    /// What an event shows of the pod that owns its interface.
    public final class PodLabel: Sendable {
        public let ifindex: UInt32
        /// `namespace/name`.
        public let pod: String
        public let namespace: String
        public let interface: String

        init(_ registration: PodRegistration) {
            ifindex = registration.ifindex
            pod = "\(registration.namespace)/\(registration.name)"
            namespace = registration.namespace
            interface = registration.interface
        }
    }

    private let pods: [UInt32: PodLabel]
    /// Object index → the policy it shows (policyRef, or the cluster policy's name).
    private let policies: [UInt32: String]

    /// Pod id → registration; object index → object.
    public init(pods: [UInt32: PodRegistration], objects: [UInt32: PolicyObject]) {
        self.pods = pods.mapValues(PodLabel.init)
        policies = objects.mapValues(\.policyRef)
    }

    /// The pod registered under `podID`.
    public func pod(_ podID: UInt32) -> PodLabel? { pods[podID] }

    /// The policy (policyRef or cluster policy name) and rule index a datapath rule id stands for.
    public func policy(ruleID: UInt32) -> (policy: String, rule: Int)? {
        guard let id = RuleID(rawValue: ruleID), let name = policies[id.objectIndex] else { return nil }
        return (name, id.rule)
    }

    /// Whether the pod and the object that decided `event` are known here.
    func knows(_ event: VerdictEvent) -> Bool {
        pods[event.podID] != nil && (RuleID(rawValue: event.ruleID).map { policies[$0.objectIndex] != nil } ?? true)
    }

    /// `event` in words; `monotonicToWall` converts its CLOCK_MONOTONIC stamp.
    public func decode(_ event: VerdictEvent, monotonicToWall: (UInt64) -> Date) -> DecodedEvent {
        let label = pods[event.podID].flatMap { $0.ifindex == event.ifindex ? $0 : nil }
        let policy: String
        var rule: Int?
        switch event.tier {
        case .podDefault:
            policy = "default"
        case .none:
            policy = switch event.reason {
            case .unparseable, .noFirstFragment: "parser"
            case .dnsProxy, .dnsBypass: "dns-proxy"
            default: "conntrack"
            }
        default:
            if let id = RuleID(rawValue: event.ruleID), let name = policies[id.objectIndex] {
                policy = name
                rule = id.rule
            } else if event.tier == .networkPolicy && event.ruleID == 0 {
                policy = "isolation"  // selected by a NetworkPolicy, no rule allowed it
            } else {
                policy = "rule \(event.ruleID)"
            }
        }
        return DecodedEvent(
            time: monotonicToWall(event.timestampNanoseconds),
            pod: label?.pod ?? "ifindex \(event.ifindex)",
            podNamespace: label?.namespace, interface: label?.interface,
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
        case .domainExpired: "domain-expired"
        case .dnsProxy: "dns-to-proxy"
        case .dnsBypass: "dns-bypass"
        case .dnsProxyDown: "dns-proxy-down"
        }
    }
}

/// Protocol names as people write them.
public enum ProtocolName {
    public static func of(_ number: UInt8) -> String {
        known(number)?.description ?? "proto-\(number)"
    }

    /// The name of a protocol the datapath knows by name.
    public static func known(_ number: UInt8) -> StaticString? {
        switch number {
        case IPProtocolNumber.tcp: "tcp"
        case IPProtocolNumber.udp: "udp"
        case IPProtocolNumber.sctp: "sctp"
        case IPProtocolNumber.icmp: "icmp"
        case IPProtocolNumber.icmpv6: "icmpv6"
        default: nil
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
        if let prefix {
            let family: AddressFamily = event.family == AddressFamily.ipv6.description ? .ipv6 : .ipv4
            if !prefix.contains(event.source, family: family), !prefix.contains(event.destination, family: family) { return false }
        }
        if let port, event.sourcePort != port, event.destinationPort != port { return false }
        if let proto, event.proto != proto { return false }
        if let tier, event.tier != tier { return false }
        if let policy, event.policy != policy { return false }
        return true
    }
}
