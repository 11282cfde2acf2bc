import DatapathModel
import Foundation
import Loader
import PolicyInput
import Rendering

/// A verdict event in words: when, which pod, which flow, what was decided and
/// by which policy. Its field names are the `-o json` interface; the datapath's
/// values stay typed and are written by their one name (`network-policy`, `deny`).
public struct DecodedEvent: Sendable, Encodable, Equatable {
    public let time: Date
    /// Who the event concerns and what decided it, in words; events of one pod and policy share them.
    public let names: EventNames
    /// `namespace/name`, or `ifindex N` for an interface no pod owns any more.
    public var pod: String { names.pod }
    public var podNamespace: String? { names.podNamespace }
    public var interface: String? { names.interface }
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
    public var policy: String { names.policy }
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
        self.init(time: time, names: EventNames(pod: pod, podNamespace: podNamespace, interface: interface, policy: policy),
                  direction: direction, family: family, protocolNumber: protocolNumber, source: source, sourcePort: sourcePort,
                  destination: destination, destinationPort: destinationPort, icmpID: icmpID, verdict: verdict, tier: tier, rule: rule,
                  reason: reason, bytes: bytes, revision: revision, packet: packet)
    }

    public init(time: Date, names: EventNames, direction: Direction, family: AddressFamily,
                protocolNumber: UInt8, source: IPAddress, sourcePort: UInt16, destination: IPAddress, destinationPort: UInt16,
                icmpID: UInt16? = nil, verdict: Verdict, tier: Tier, rule: Int?, reason: Reason, bytes: UInt32,
                revision: UInt32, packet: [UInt8] = []) {
        self.packet = packet
        self.time = time
        self.names = names
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

/// The words of an event that its pod and the policy that decided it fix: a drain names
/// few pods and rules many times, so events share one of these (writers key on it).
public final class EventNames: Sendable, Equatable {
    /// `namespace/name`, or `ifindex N` for an interface no pod owns any more.
    public let pod: String
    public let podNamespace: String?
    public let interface: String?
    /// See ``DecodedEvent/policy``.
    public let policy: String

    public init(pod: String, podNamespace: String?, interface: String?, policy: String) {
        self.pod = pod
        self.podNamespace = podNamespace
        self.interface = interface
        self.policy = policy
    }

    public static func == (left: EventNames, right: EventNames) -> Bool {
        left === right || (left.pod, left.podNamespace, left.interface, left.policy) == (right.pod, right.podNamespace, right.interface, right.policy)
    }
}

/// Turns the datapath's events into words with one view of the loader's state, naming
/// each pod and policy once: a decoded event builds no string and looks up no name
/// after the first of its kind.
final class EventDecoder {
    let attribution: Attribution

    /// Names, and the index of the rule that decided (when one did), by what decides them: the
    /// event's pod and interface, and its rule id, tier, reason and direction, as two words.
    /// A ``DirectMapped`` table in raw memory (a kind of event that lost its slot is named again).
    private struct Slot {
        var key: (UInt64, UInt64)
        var names: EventNames?
        var rule: Int?
        /// Whether this view knew the pod and the rule when it named them (`knows`).
        var known = false
    }
    private static let bits = 8, slots = 1 << bits
    private let table = UnsafeMutablePointer<Slot>.allocate(capacity: slots)

    init(attribution: Attribution) {
        self.attribution = attribution
        table.initialize(repeating: Slot(key: (0, 0), names: nil, rule: nil), count: Self.slots)
    }

    deinit {
        table.deinitialize(count: Self.slots)
        table.deallocate()
    }

    /// Whether the pod and the object that decided `event` are known here.
    /// A kind of event named before answers from its slot (no lookup per event).
    func knows(_ event: VerdictEvent) -> Bool {
        let key = Self.key(event), slot = table + DirectMapped.slot(key.0, key.1, bits: Self.bits)
        if slot.pointee.names != nil, slot.pointee.key == key { return slot.pointee.known }
        return looksUp(event)
    }

    private func looksUp(_ event: VerdictEvent) -> Bool {
        attribution.pod(event.podID) != nil && attribution.knows(ruleID: event.ruleID)
    }

    /// What decides an event's names, as two words.
    private static func key(_ event: VerdictEvent) -> (UInt64, UInt64) {
        (UInt64(event.podID) << 32 | UInt64(event.ifindex),
         UInt64(event.ruleID) << 32 | UInt64(event.tier.rawValue) << 16 | UInt64(event.reason.rawValue) << 8 | UInt64(event.direction.rawValue))
    }

    /// `event` in words, with `packet` (its capture); `monotonicToWall` converts its CLOCK_MONOTONIC stamp.
    func decode(_ event: VerdictEvent, packet: [UInt8] = [], monotonicToWall: (UInt64) -> Date) -> DecodedEvent {
        let key = Self.key(event), slot = table + DirectMapped.slot(key.0, key.1, bits: Self.bits)
        if slot.pointee.names == nil || slot.pointee.key != key {
            let named = Self.names(of: event, attribution)
            slot.pointee = Slot(key: key, names: named.names, rule: named.rule,
                                known: looksUp(event))
        }
        let named = (names: slot.pointee.names!, rule: slot.pointee.rule)
        let echo = IPProtocolNumber.carriesEchoIdentifier(event.protocolNumber)
        return DecodedEvent(
            time: monotonicToWall(event.timestampNanoseconds), names: named.names,
            direction: event.direction, family: AddressFamily(rawValue: event.family) ?? .ipv4, protocolNumber: event.protocolNumber,
            source: event.source, sourcePort: echo ? 0 : event.sourcePort,
            destination: event.destination, destinationPort: echo ? 0 : event.destinationPort,
            icmpID: echo && event.reason != .fragment ? event.sourcePort : nil,
            verdict: event.verdict, tier: event.tier, rule: named.rule, reason: event.reason, bytes: event.length, revision: event.revision, packet: packet)
    }

    private static func names(of event: VerdictEvent, _ attribution: Attribution) -> (names: EventNames, rule: Int?) {
        let label = attribution.pod(event.podID).flatMap { $0.ifindex == event.ifindex ? $0 : nil }
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
            if let named = attribution.policy(ruleID: event.ruleID) {
                policy = named.policy
                rule = named.rule
            } else if event.tier == .networkPolicy && event.ruleID == 0 {
                // selected by a NetworkPolicy, no rule allowed it: name what isolates the pod
                policy = attribution.isolationName(podID: event.podID, direction: event.direction)
            } else {
                policy = "rule \(event.ruleID)"
            }
        }
        return (EventNames(pod: label?.pod ?? "ifindex \(event.ifindex)", podNamespace: label?.namespace, interface: label?.interface,
                           policy: policy), rule)
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
