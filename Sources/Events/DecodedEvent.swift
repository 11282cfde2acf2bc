import DatapathModel
import Foundation
import Loader
import PolicyInput

/// A verdict event in words: when, which pod, which flow, what was decided and
/// by which policy. Its field names are the `-o json` interface; the datapath's
/// values stay typed and are written by their one name (`network-policy`, `deny`).
public struct DecodedEvent: Sendable, Encodable, Equatable {
    public let time: Date
    /// `namespace/name`, or `ifindex N` for an interface no pod owns any more.
    public let pod: String
    public let podNamespace: String?
    public let interface: String?
    public let direction: Direction
    public let family: AddressFamily
    /// IANA number; `proto` in JSON, by name where the datapath knows one.
    public let protocolNumber: UInt8
    public let source: IPAddress
    public let sourcePort: UInt16
    public let destination: IPAddress
    public let destinationPort: UInt16
    /// ICMP and ICMPv6 echo: the identifier (their ports are 0).
    public let icmpID: UInt16?
    public let verdict: Verdict
    public let tier: Tier
    /// `namespace/name` of the PolicyEndpoint's policyRef, the cluster policy's
    /// name, `default` when the pod default decided, `conntrack` / `parser`
    /// when no tier did.
    public let policy: String
    /// The rule's index in the object's ingress or egress list.
    public let rule: Int?
    public let reason: Reason
    public let bytes: UInt32
    public let revision: UInt32
    /// The packet's first bytes (from its Ethernet header) when the datapath captured them; empty
    /// otherwise. Not part of the JSON (`--pcap` writes packets).
    public let packet: [UInt8]

    public init(time: Date, pod: String, podNamespace: String?, interface: String?, direction: Direction, family: AddressFamily,
                protocolNumber: UInt8, source: IPAddress, sourcePort: UInt16, destination: IPAddress, destinationPort: UInt16,
                icmpID: UInt16? = nil, verdict: Verdict, tier: Tier, policy: String, rule: Int?, reason: Reason, bytes: UInt32,
                revision: UInt32, packet: [UInt8] = []) {
        self.packet = packet
        self.time = time
        self.pod = pod
        self.podNamespace = podNamespace
        self.interface = interface
        self.direction = direction
        self.family = family
        self.protocolNumber = protocolNumber
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

    /// `tcp`, or `proto-N` for a protocol the datapath does not name.
    public var proto: String { ProtocolName.of(protocolNumber) }

    enum CodingKeys: String, CodingKey {
        case time, pod, podNamespace, interface, direction, family, proto, source, sourcePort, destination, destinationPort, icmpID
        case verdict, tier, policy, rule, reason, bytes, revision
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(time, forKey: .time)
        try container.encode(pod, forKey: .pod)
        try container.encodeIfPresent(podNamespace, forKey: .podNamespace)
        try container.encodeIfPresent(interface, forKey: .interface)
        try container.encode(direction.description, forKey: .direction)
        try container.encode(family.description, forKey: .family)
        try container.encode(proto, forKey: .proto)
        try container.encode(source, forKey: .source)
        try container.encode(sourcePort, forKey: .sourcePort)
        try container.encode(destination, forKey: .destination)
        try container.encode(destinationPort, forKey: .destinationPort)
        try container.encodeIfPresent(icmpID, forKey: .icmpID)
        try container.encode(verdict.description, forKey: .verdict)
        try container.encode(tier.description, forKey: .tier)
        try container.encode(policy, forKey: .policy)
        try container.encodeIfPresent(rule, forKey: .rule)
        try container.encode(reason.description, forKey: .reason)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(revision, forKey: .revision)
    }
}

extension Attribution {
    /// Whether the pod and the object that decided `event` are known here.
    func knows(_ event: VerdictEvent) -> Bool {
        pod(event.podID) != nil && knows(ruleID: event.ruleID)
    }

    /// `event` in words, with `packet` (its capture); `monotonicToWall` converts its CLOCK_MONOTONIC stamp.
    public func decode(_ event: VerdictEvent, packet: [UInt8] = [], monotonicToWall: (UInt64) -> Date) -> DecodedEvent {
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
                policy = isolationName(podID: event.podID, direction: event.direction)
            } else {
                policy = "rule \(event.ruleID)"
            }
        }
        let echo = IPProtocolNumber.carriesEchoIdentifier(event.protocolNumber)
        return DecodedEvent(
            time: monotonicToWall(event.timestampNanoseconds),
            pod: label?.pod ?? "ifindex \(event.ifindex)",
            podNamespace: label?.namespace, interface: label?.interface,
            direction: event.direction, family: AddressFamily(rawValue: event.family) ?? .ipv4, protocolNumber: event.protocolNumber,
            source: event.source, sourcePort: echo ? 0 : event.sourcePort,
            destination: event.destination, destinationPort: echo ? 0 : event.destinationPort,
            icmpID: echo && event.reason != .fragment ? event.sourcePort : nil,
            verdict: event.verdict, tier: event.tier, policy: policy, rule: rule, reason: event.reason, bytes: event.length,
            revision: event.revision, packet: packet)
    }
}

/// `--pod`, `--verdict`, `--ip` … combined with AND; typed values compared as such.
public struct EventFilter: Sendable {
    /// `namespace/name` (netfence), or the AWS agent's pod identifier.
    public var pod: String?
    public var namespace: String?
    public var verdict: Verdict?
    public var direction: Direction?
    public var prefix: IPPrefix?
    public var port: UInt16?
    public var protocolNumber: UInt8?
    public var tier: Tier?
    public var policy: String?

    public init() {}

    public func matches(_ event: DecodedEvent) -> Bool {
        if let pod, event.pod != pod { return false }
        if let namespace, event.podNamespace != namespace { return false }
        if let verdict, event.verdict != verdict { return false }
        if let direction, event.direction != direction { return false }
        if let prefix, !prefix.contains(event.source, family: event.family), !prefix.contains(event.destination, family: event.family) { return false }
        if let port, event.sourcePort != port, event.destinationPort != port { return false }
        if let protocolNumber, event.protocolNumber != protocolNumber { return false }
        if let tier, event.tier != tier { return false }
        if let policy, event.policy != policy { return false }
        return true
    }
}
