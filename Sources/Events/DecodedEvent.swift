import DatapathModel
import Foundation
import Loader
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
    /// ICMP and ICMPv6 echo: the identifier (their ports are 0).
    public let icmpID: UInt16?
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
                icmpID: UInt16? = nil, verdict: String, tier: String, policy: String, rule: Int?, reason: String, bytes: UInt32, revision: UInt32) {
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
        self.icmpID = icmpID
        self.verdict = verdict
        self.tier = tier
        self.policy = policy
        self.rule = rule
        self.reason = reason
        self.bytes = bytes
        self.revision = revision
    }
}

extension Attribution {
    /// Whether the pod and the object that decided `event` are known here.
    func knows(_ event: VerdictEvent) -> Bool {
        pod(event.podID) != nil && (RuleID(rawValue: event.ruleID).map { policy(ruleID: $0.rawValue) != nil } ?? true)
    }

    /// `event` in words; `monotonicToWall` converts its CLOCK_MONOTONIC stamp.
    public func decode(_ event: VerdictEvent, monotonicToWall: (UInt64) -> Date) -> DecodedEvent {
        let label = pod(event.podID).flatMap { $0.ifindex == event.ifindex ? $0 : nil }
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
            if let named = self.policy(ruleID: event.ruleID) {
                policy = named.policy
                rule = named.rule
            } else if event.tier == .networkPolicy && event.ruleID == 0 {
                // selected by a NetworkPolicy, no rule allowed it: name what isolates the pod
                let isolating = isolatingPolicies(podID: event.podID, direction: event.direction)
                policy = isolating.isEmpty ? "isolation" : "isolation by " + isolating.joined(separator: ", ")
            } else {
                policy = "rule \(event.ruleID)"
            }
        }
        let echo = IPProtocolNumber.carriesEchoIdentifier(event.protocolNumber)
        return DecodedEvent(
            time: monotonicToWall(event.timestampNanoseconds),
            pod: label?.pod ?? "ifindex \(event.ifindex)",
            podNamespace: label?.namespace, interface: label?.interface,
            direction: event.direction.description, family: event.family == 6 ? "ipv6" : "ipv4",
            proto: ProtocolName.of(event.protocolNumber),
            source: event.source, sourcePort: echo ? 0 : event.sourcePort,
            destination: event.destination, destinationPort: echo ? 0 : event.destinationPort,
            icmpID: echo && event.reason != .fragment ? event.sourcePort : nil,
            verdict: event.verdict == .allow ? "allow" : "deny", tier: event.tier.description,
            policy: policy, rule: rule, reason: event.reason.description, bytes: event.length, revision: event.revision)
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
