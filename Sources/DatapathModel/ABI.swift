import CNetfenceABI

/// The datapath's limits, as `bpf/netfence_abi.h` defines them.
public enum DatapathLimits {
    public static let rulesPerPrefix = Int(NF_MAX_RULES_PER_PREFIX)
    public static let prefixesPerPod = Int(NF_MAX_PREFIXES)
    public static let pods = Int(NF_MAX_PODS)
    public static let conntrackEntries = Int(NF_CONNTRACK_ENTRIES)
    /// Bytes of each CPU's event ring.
    public static let eventCPURingBytes = Int(NF_EVENT_CPU_RING_BYTES)
    public static let eventDoorbellBytes = Int(NF_EVENT_DOORBELL_BYTES)
    /// How long a reader waiting for events may wait at most: the datapath wakes it only
    /// once a quarter of a CPU's ring waits.
    public static let eventReaderPollSeconds = Double(NF_EVENT_READER_POLL_MS) / 1000
    public static let ipv6ExtensionHeaders = Int(NF_MAX_IPV6_EXTENSIONS)
    public static let maxObjects = Int(NF_MAX_OBJECTS)
    public static let domainGrants = Int(NF_DOMAIN_GRANT_ENTRIES)
    public static let patternsPerGrant = Int(NF_MAX_PATTERNS_PER_GRANT)
    public static let domainRuleSets = Int(NF_DOMAIN_RULE_ENTRIES)
    public static let dnsProxies = Int(NF_MAX_DNS_PROXIES)
    public static let dnsPort = UInt16(NF_DNS_PORT)
    public static let dnsHeartbeatTimeoutNanoseconds = UInt64(NF_DNS_HEARTBEAT_TIMEOUT_NS)
}

/// Sizes of ABI structs the loader checks maps against.
public enum ABISizes {
    public static let conntrackKey = nf_conntrack_key.size
    public static let conntrackValue = nf_conntrack_value.size
    public static let fragmentKey = nf_fragment_key.size
    public static let fragmentValue = nf_fragment_value.size
    public static let settings = nf_settings.size
    public static let podEventLevel = nf_pod_event_level.size
    public static let eventLimit = nf_event_limit.size
    /// One CPU's event ring (its data is too long an array to import as a Swift tuple).
    public static let eventRing = Int(nf_event_ring_size())
    /// Bytes an event with `captured` bytes of its packet takes in its ring.
    public static func eventRecord(captured: Int) -> Int { Int(nf_event_record_bytes(UInt32(captured))) }
    public static let event = nf_event.size
    public static let packetCounter = nf_packet_counter.size
    public static let domainRuleKey = nf_domain_rule_key.size
    public static let domainGrantKey = nf_domain_grant_key.size
    public static let domainGrant = nf_domain_grant.size
    public static let dnsProxy = nf_dns_proxy.size
}

/// An enum of the ABI with one name per value, the name people read and type:
/// tables, JSON, filters and command-line values all use it, both ways.
public protocol ABIName: CaseIterable, CustomStringConvertible, Sendable {
    var name: StaticString { get }
}

extension ABIName {
    public var description: String { name.description }

    /// The value named `name`; nil for any other word.
    public init?(name: String) {
        guard let value = Self.allCases.first(where: { $0.name.description == name }) else { return nil }
        self = value
    }

    /// Every name, in declaration order.
    public static var names: [String] { allCases.map(\.description) }
}

/// Which way traffic crosses the pod's host veth, from the pod's point of view.
public enum Direction: UInt8, ABIName {
    case ingress = 0, egress = 1
    public var name: StaticString { self == .ingress ? "ingress" : "egress" }
}

/// Policy tiers, in evaluation order.
public enum Tier: UInt8, ABIName {
    case none = 0, admin = 1, networkPolicy = 2, baseline = 3, podDefault = 4
    public var name: StaticString {
        switch self {
        case .none: "none"
        case .admin: "admin"
        case .networkPolicy: "network-policy"
        case .baseline: "baseline"
        case .podDefault: "default"
        }
    }
}

/// What a rule does. At equal priority Deny beats Accept beats Pass.
public enum RuleAction: UInt8, ABIName {
    case deny = 0, accept = 1, pass = 2
    public var name: StaticString {
        switch self {
        case .deny: "deny"
        case .accept: "accept"
        case .pass: "pass"
        }
    }
}

/// What a pod does in a direction when no Admin rule decides.
public enum PodState: UInt8, ABIName {
    case defaultAllow = 0, defaultDeny = 1, policiesApplied = 2
    public var name: StaticString {
        switch self {
        case .defaultAllow: "default-allow"
        case .defaultDeny: "default-deny"
        case .policiesApplied: "policies-applied"
        }
    }
}

/// What the datapath did with a packet (`enum nf_verdict`); `audit` only in
/// events: what audit objects would have decided (the reason says which way).
public enum Verdict: UInt8, ABIName {
    case deny = 0, allow = 1, audit = 2
    public var name: StaticString {
        switch self {
        case .deny: "deny"
        case .allow: "allow"
        case .audit: "audit"
        }
    }
}

/// Why a verdict was reached (events).
public enum Reason: UInt8, ABIName {
    case policy = 0, reevaluated = 1, related = 2, fragment = 3, unparseable = 4, noFirstFragment = 5
    /// The pod resolved the peer by a domain rule, but the grant's TTL ran out.
    case domainExpired = 6
    /// DNS of a pod with domain rules: to the DNS proxy, or to another resolver.
    case dnsProxy = 7, dnsBypass = 8
    /// The pod resolved the peer by a domain rule, but no DNS proxy is alive (fail closed).
    case dnsProxyDown = 9
    /// With audit objects enforced, this new flow would be denied, or allowed.
    case auditWouldDeny = 10, auditWouldAllow = 11

    public var name: StaticString {
        switch self {
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
        case .auditWouldDeny: "would-deny"
        case .auditWouldAllow: "would-allow"
        }
    }
}

/// Which verdicts produce events.
public enum EventLevel: UInt32, ABIName {
    case none = 0, deny = 1, all = 2
    public var name: StaticString {
        switch self {
        case .none: "none"
        case .deny: "deny"
        case .all: "all"
        }
    }
}

/// Node-wide counters in the stats map (`enum nf_stat`).
public enum DatapathStat: UInt32, ABIName {
    case eventsLost = 0, unparseableDrops = 1, unknownInterface = 2, conntrackFull = 3

    public var name: StaticString {
        switch self {
        case .eventsLost: "events-lost"
        case .unparseableDrops: "unparseable-drops"
        case .unknownInterface: "unknown-interface"
        case .conntrackFull: "conntrack-full"
        }
    }
}

/// The counts of netfence's changes to a map (`generations`, one per value): a process that keeps
/// what it read of the map reads again when the count moved.
public enum DatapathGeneration: UInt32, ABIName {
    case pods = 0, grants = 1

    public var name: StaticString {
        switch self {
        case .pods: "pods"
        case .grants: "grants"
        }
    }
}

/// How pods' programs sit on their host veth's hooks (`enum nf_attachment`): a cls_bpf filter
/// on clsact, a tcx link (kernel 6.6 on), which runs without the classifier's layers, or a filter
/// that `loader serve` replaces with links once the pod has stayed (attached as cheaply as a
/// filter, run as cheaply as a link).
public enum Attachment: UInt32, ABIName, Encodable {
    case tc = 0, tcx = 1, tcThenTCX = 2

    public var name: StaticString {
        switch self {
        case .tc: "tc"
        case .tcx: "tcx"
        case .tcThenTCX: "tc-then-tcx"
        }
    }

    /// As its name (`"tc"`, `"tcx"`, `"tc-then-tcx"`), as `loader status` and `loader init` print it, not its ABI number.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// IANA protocol numbers the datapath names, plus "any" for rules.
public enum IPProtocolNumber {
    public static let icmp = UInt8(NF_PROTOCOL_ICMP.rawValue)
    public static let tcp = UInt8(NF_PROTOCOL_TCP.rawValue)
    public static let udp = UInt8(NF_PROTOCOL_UDP.rawValue)
    public static let icmpv6 = UInt8(NF_PROTOCOL_ICMPV6.rawValue)
    public static let sctp = UInt8(NF_PROTOCOL_SCTP.rawValue)
    public static let any = UInt8(NF_PROTOCOL_ANY.rawValue)

    /// ICMP and ICMPv6 have no ports: the datapath keys echo flows by their identifier in both port fields.
    public static func carriesEchoIdentifier(_ number: UInt8) -> Bool { number == icmp || number == icmpv6 }
}

/// Protocol names as people write them.
public enum ProtocolName {
    public static func of(_ number: UInt8) -> String {
        known(number)?.description ?? "proto-\(number)"
    }

    /// The number a name stands for (`tcp`, `ICMPv6`: case does not matter), or a number from 0 to 255 as written;
    /// nil for anything else.
    public static func number(_ text: String) -> UInt8? {
        let lowered = text.lowercased()
        for number in [IPProtocolNumber.tcp, IPProtocolNumber.udp, IPProtocolNumber.sctp, IPProtocolNumber.icmp, IPProtocolNumber.icmpv6]
        where known(number)?.description == lowered { return number }
        return UInt8(text, radix: 10)
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

/// `struct nf_port_rule`: one protocol and port range, and what it does in which tier.
public struct PortRule: Hashable, Sendable {
    public var ruleID: UInt32
    /// 0: every port, and protocols without ports.
    public var portStart: UInt16
    /// Inclusive; equals `portStart` for one port.
    public var portEnd: UInt16
    public var priority: UInt16
    public var protocolNumber: UInt8
    public var tier: Tier
    public var action: RuleAction
    /// A rule of an audit object: it decides nothing, it says what would be decided (NF_RULE_AUDIT).
    public var audit: Bool

    public init(ruleID: UInt32, protocolNumber: UInt8, portStart: UInt16 = 0, portEnd: UInt16? = nil,
                tier: Tier = .networkPolicy, priority: UInt16 = 0, action: RuleAction = .accept, audit: Bool = false) {
        self.ruleID = ruleID
        self.protocolNumber = protocolNumber
        self.portStart = portStart
        self.portEnd = portEnd ?? portStart
        self.tier = tier
        self.priority = priority
        self.action = action
        self.audit = audit
    }

    /// Whether a packet of `protocolNumber` to `port` matches.
    public func matches(protocolNumber packetProtocol: UInt8, port: UInt16) -> Bool {
        (protocolNumber == IPProtocolNumber.any || protocolNumber == packetProtocol)
            && (portStart == 0 || (port >= portStart && port <= portEnd))
    }

    /// The rule a header struct holds; nil for a tier or action this binary does not know.
    init?(_ raw: nf_port_rule) {
        guard let tier = Tier(rawValue: raw.tier), let action = RuleAction(rawValue: raw.action) else { return nil }
        self.init(ruleID: raw.rule_id, protocolNumber: raw.protocol, portStart: raw.port_start, portEnd: raw.port_end, tier: tier,
                  priority: raw.priority, action: action, audit: raw.flags & UInt8(NF_RULE_AUDIT) != 0)
    }

    var abi: nf_port_rule {
        var raw = nf_port_rule()
        raw.rule_id = ruleID
        raw.port_start = portStart
        raw.port_end = portEnd
        raw.priority = priority
        raw.protocol = protocolNumber
        raw.tier = tier.rawValue
        raw.action = action.rawValue
        raw.flags = audit ? UInt8(NF_RULE_AUDIT) : 0
        return raw
    }
}

/// `struct nf_rule_set`: the value of a trie entry.
public enum RuleSetCodec {
    public static let size = nf_rule_set.size

    /// The bytes of a rule set; the caller checked `rules.count <= rulesPerPrefix`.
    public static func encode(_ rules: [PortRule]) -> [UInt8] {
        var set = nf_rule_set()
        set.count = UInt32(rules.count)
        ABIArray.set(&set.rules, to: rules.map(\.abi))
        return set.bytes
    }

    /// The rules of a trie value, or nil when the bytes are not a rule set.
    public static func decode(_ bytes: [UInt8]) -> [PortRule]? {
        bytes.withUnsafeBytes(decode)
    }

    /// The rules of a trie value where a batch read put it.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> [PortRule]? {
        guard let set = nf_rule_set.load(bytes), set.count <= DatapathLimits.rulesPerPrefix else { return nil }
        let rules = ABIArray.elements(set.rules, of: nf_port_rule.self).prefix(Int(set.count)).map(PortRule.init)
        return rules.contains(where: { $0 == nil }) ? nil : rules.compactMap { $0 }
    }
}

/// `struct nf_lpm_key`: a prefix as the trie keys it, its family first.
public enum LPMKeyCodec {
    public static let size = nf_lpm_key.size
    static let familyBits = Int(NF_LPM_FAMILY_BITS)

    public static func encode(_ prefix: IPPrefix) -> [UInt8] {
        var key = nf_lpm_key()
        key.prefixlen = UInt32(familyBits + prefix.length)
        key.family = prefix.family.rawValue
        prefix.address.store(in: &key.address)
        return key.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> IPPrefix? {
        bytes.withUnsafeBytes(decode)
    }

    /// The prefix of a trie key where a batch read put it; nil for bytes that are not one.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> IPPrefix? {
        guard let key = nf_lpm_key.load(bytes), key.prefixlen >= familyBits, key.prefixlen <= familyBits + 128,
              let family = AddressFamily(rawValue: key.family) else { return nil }
        let length = Int(key.prefixlen) - familyBits
        guard family == .ipv6 || length >= 96 else { return nil }
        return IPPrefix(address: IPAddress(field: key.address), length: length, family: family)
    }
}

/// `struct nf_pod`: the pod behind a host veth.
public struct PodRecord: Equatable, Sendable {
    public var podID: UInt32
    public var revision: UInt32
    /// Which of the pod's two domain-rule slots is live.
    public var slot: UInt8
    public var states: [Direction: PodState]
    /// Where each direction's trie sits in `policies` (a direction without one is absent).
    public var tries: [Direction: TrieIndex]
    /// Egress rules by domain name: DNS only to a DNS proxy, grants consulted (NF_POD_DOMAIN_RULES).
    public var hasDomainRules: Bool
    /// With audit objects enforced, the states per direction; nil when no audit object selects the pod (NF_POD_AUDIT).
    public var auditStates: [Direction: PodState]?
    /// Directions whose trie holds audit rules only: for what is enforced the pod has no trie there (NF_POD_AUDIT_ONLY_TRIE).
    public var auditOnlyTries: Set<Direction>

    public init(podID: UInt32, revision: UInt32 = 0, slot: UInt8 = 0,
                states: [Direction: PodState] = [.ingress: .defaultAllow, .egress: .defaultAllow], tries: [Direction: TrieIndex] = [:],
                hasDomainRules: Bool = false, auditStates: [Direction: PodState]? = nil, auditOnlyTries: Set<Direction> = []) {
        self.podID = podID
        self.revision = revision
        self.slot = slot
        self.states = states
        self.tries = tries
        self.hasDomainRules = hasDomainRules
        self.auditStates = auditStates
        self.auditOnlyTries = auditOnlyTries
    }

    public static let size = nf_pod.size

    public func encode() -> [UInt8] {
        var pod = nf_pod()
        pod.pod_id = podID
        pod.revision = revision
        pod.slot = slot
        ABIArray.set(&pod.state, to: Direction.allCases.map { states[$0, default: .defaultAllow].rawValue })
        ABIArray.set(&pod.trie, to: Direction.allCases.map { tries[$0]?.rawValue ?? TrieIndex.none })
        pod.flags = hasDomainRules ? UInt8(NF_POD_DOMAIN_RULES) : 0
        if let auditStates {
            pod.flags |= UInt8(NF_POD_AUDIT)
            for direction in Direction.allCases {
                pod.flags |= auditStates[direction, default: .defaultAllow].rawValue << (UInt8(NF_POD_AUDIT_STATE_SHIFT) + 2 * direction.rawValue)
            }
        }
        for direction in auditOnlyTries { pod.flags |= UInt8(NF_POD_AUDIT_ONLY_TRIE) << direction.rawValue }
        return pod.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> PodRecord? {
        bytes.withUnsafeBytes(decode)
    }

    /// The record where a batch read put it; nil for bytes of another size, an unknown state or a trie index past `policies`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> PodRecord? {
        guard let pod = nf_pod.load(bytes) else { return nil }
        var states: [Direction: PodState] = [:], tries: [Direction: TrieIndex] = [:]
        for direction in Direction.allCases {
            guard let state = ABIArray.element(pod.state, Int(direction.rawValue), of: UInt8.self).flatMap(PodState.init),
                  let trie = ABIArray.element(pod.trie, Int(direction.rawValue), of: UInt16.self) else { return nil }
            states[direction] = state
            if trie != TrieIndex.none {
                guard let index = TrieIndex(rawValue: trie) else { return nil }
                tries[direction] = index
            }
        }
        var auditStates: [Direction: PodState]?
        if pod.flags & UInt8(NF_POD_AUDIT) != 0 {
            auditStates = [:]
            for direction in Direction.allCases {
                let raw = pod.flags >> (UInt8(NF_POD_AUDIT_STATE_SHIFT) + 2 * direction.rawValue) & 3
                guard let state = PodState(rawValue: raw) else { return nil }
                auditStates?[direction] = state
            }
        }
        return PodRecord(podID: pod.pod_id, revision: pod.revision, slot: pod.slot, states: states, tries: tries,
                         hasDomainRules: pod.flags & UInt8(NF_POD_DOMAIN_RULES) != 0, auditStates: auditStates,
                         auditOnlyTries: Set(Direction.allCases.filter { pod.flags & (UInt8(NF_POD_AUDIT_ONLY_TRIE) << $0.rawValue) != 0 }))
    }
}

/// Where a trie sits in the `policies` array: what pod records name, shared by pods with identical policies.
public struct TrieIndex: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    /// A record's value for "no trie" (`NF_NO_TRIE`).
    static let none = UInt16(NF_NO_TRIE)
    /// Indexes `policies` has (`NF_POLICY_ENTRIES`).
    public static let count = Int(NF_POLICY_ENTRIES)

    public init?(rawValue: UInt16) {
        guard Int(rawValue) < Self.count else { return nil }
        self.rawValue = rawValue
    }

    /// The index as a key of `policies` and `policy_digests`.
    public var key: [UInt8] { withUnsafeBytes(of: UInt32(rawValue)) { Array($0) } }
    public var description: String { "\(rawValue)" }
    public static func < (lhs: TrieIndex, rhs: TrieIndex) -> Bool { lhs.rawValue < rhs.rawValue }
    public static var all: [TrieIndex] { (0..<UInt16(count)).compactMap(TrieIndex.init) }
}

/// `enum nf_trie_role`: a trie in `policies` that holds no policy yet, kept by `loader serve`'s
/// keeper or by commands recycling on their next wait (`TrieRecycling`), so a change fills a trie
/// already there instead of waiting for a grace period to insert one.
public enum TrieRole: UInt8, ABIName {
    /// Empty, named by no record: a change may fill it.
    case spare = 1
    /// Empty, being inserted at its index by the keeper.
    case arriving = 2
    /// Named by no record any more, waiting out a grace period before it is emptied into a spare.
    case cooling = 3

    public var name: StaticString {
        switch self {
        case .spare: "spare"
        case .arriving: "arriving"
        case .cooling: "cooling"
        }
    }

    /// A role's place in a record: 31 zero bytes, then the role (no policy's SHA-256 looks like that).
    var digest: PolicyDigest { PolicyDigest(bytes: [UInt8](repeating: 0, count: 31) + [rawValue])! }
}

/// `struct nf_policy_digest`: what the trie at an index holds, valid while that trie (by map id) is there:
/// a policy's digest, or a role of a trie that holds none yet.
public struct TrieDigestRecord: Equatable, Sendable {
    public let mapID: UInt32
    public let digest: PolicyDigest

    public init(mapID: UInt32, digest: PolicyDigest) {
        self.mapID = mapID
        self.digest = digest
    }

    public init(mapID: UInt32, role: TrieRole) {
        self.init(mapID: mapID, digest: role.digest)
    }

    /// The role of a trie that holds no policy; nil for a policy's digest.
    public var role: TrieRole? {
        guard digest.bytes.prefix(31).allSatisfy({ $0 == 0 }) else { return nil }
        return TrieRole(rawValue: digest.bytes[31])
    }

    public static let size = nf_policy_digest.size

    public func encode() -> [UInt8] {
        var value = nf_policy_digest()
        value.map_id = mapID
        ABIArray.set(&value.sha256, to: digest.bytes)
        return value.bytes
    }

    /// nil for bytes of another size and for an entry never written (map id 0).
    public static func decode(_ bytes: [UInt8]) -> TrieDigestRecord? {
        guard let value = nf_policy_digest.load(bytes), value.map_id != 0,
              let digest = PolicyDigest(bytes: ABIArray.elements(value.sha256, of: UInt8.self)) else { return nil }
        return TrieDigestRecord(mapID: value.map_id, digest: digest)
    }
}

/// The events that carry their packet (`enum nf_capture_verdicts`).
public enum CaptureVerdicts: UInt8, ABIName {
    case denied = 0, all = 1
    public var name: StaticString { self == .denied ? "deny" : "all" }
}

/// `struct nf_settings`: the datapath's runtime knobs, changed without reloading.
public struct DatapathSettings: Equatable, Sendable {
    /// Which verdicts produce events, for pods without their own level.
    public var eventLevel: EventLevel
    /// Bytes of each captured packet kept in its event (0: no capture; at most `maxSnaplen`).
    public var snaplen: Int
    public var captureVerdicts: CaptureVerdicts
    /// Events a second per pod and direction, and for the node (nil: no limit).
    public var podEventRate: UInt32?
    public var nodeEventRate: UInt32?

    public static let maxSnaplen = Int(NF_MAX_SNAPLEN)
    /// What a new node starts with: denies reported, each with its first 128 bytes, no rate limit.
    public static let initial = DatapathSettings(eventLevel: .deny, snaplen: Int(NF_DEFAULT_SNAPLEN), captureVerdicts: .denied)

    public init(eventLevel: EventLevel, snaplen: Int, captureVerdicts: CaptureVerdicts, podEventRate: UInt32? = nil, nodeEventRate: UInt32? = nil) {
        self.eventLevel = eventLevel
        self.snaplen = snaplen
        self.captureVerdicts = captureVerdicts
        self.podEventRate = podEventRate
        self.nodeEventRate = nodeEventRate
    }

    public func encode() -> [UInt8] {
        var raw = nf_settings()
        raw.event_level = eventLevel.rawValue
        raw.snaplen = UInt16(clamping: min(snaplen, Self.maxSnaplen))
        raw.capture_verdicts = captureVerdicts.rawValue
        raw.pod_event_rate = podEventRate ?? 0
        raw.node_event_rate = nodeEventRate ?? 0
        return raw.bytes
    }

    /// nil for bytes of another size or values this binary does not know.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> DatapathSettings? {
        guard let raw = nf_settings.load(bytes), let level = EventLevel(rawValue: raw.event_level),
              let capture = CaptureVerdicts(rawValue: raw.capture_verdicts) else { return nil }
        return DatapathSettings(eventLevel: level, snaplen: Int(raw.snaplen), captureVerdicts: capture,
                                podEventRate: raw.pod_event_rate == 0 ? nil : raw.pod_event_rate,
                                nodeEventRate: raw.node_event_rate == 0 ? nil : raw.node_event_rate)
    }

    public static func decode(_ bytes: [UInt8]) -> DatapathSettings? { bytes.withUnsafeBytes(decode) }

    /// The settings a pinned value of an earlier layout stands for: its event level
    /// (the first field of every layout so far), the rest as a new node has them.
    public static func carriedOver(from bytes: [UInt8]) -> DatapathSettings {
        if let settings = decode(bytes) { return settings }
        var settings = initial
        if bytes.count >= 4, let level = EventLevel(rawValue: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) {
            settings.eventLevel = level
        }
        return settings
    }
}

/// `struct nf_pod_event_level`: a pod's own event level, or none (it follows the node's).
public enum PodEventLevelCodec {
    public static func encode(_ level: EventLevel?) -> [UInt8] {
        var raw = nf_pod_event_level()
        raw.overridden = level == nil ? 0 : 1
        raw.level = UInt8(level?.rawValue ?? 0)
        return raw.bytes
    }

    /// `.some(nil)`: the pod follows the node; nil: bytes this binary does not know.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> EventLevel?? {
        guard let raw = nf_pod_event_level.load(bytes), raw.overridden <= 1 else { return nil }
        if raw.overridden == 0 { return .some(nil) }
        return EventLevel(rawValue: UInt32(raw.level)).map { .some($0) }
    }
}

/// Where the rate limiter of a pod's direction sits in `event_limits` (`nf_event_limit_index`), and the node's.
public enum EventLimitIndex {
    public static func of(podID: UInt32, direction: Direction) -> UInt32 {
        podID * UInt32(NF_DIRECTION_COUNT.rawValue) + UInt32(direction.rawValue)
    }
    public static let node = UInt32(NF_NODE_EVENT_LIMIT.rawValue)
    public static func podAndDirection(_ index: UInt32) -> (podID: UInt32, direction: Direction)? {
        guard index < node else { return nil }
        let directions = UInt32(NF_DIRECTION_COUNT.rawValue)
        return (index / directions, Direction(rawValue: UInt8(index % directions)) ?? .ingress)
    }
}

/// `struct nf_event_counts`: events by verdict (allow, deny, audit).
public struct EventCounts: Equatable, Sendable {
    public var byVerdict: [Verdict: UInt64]

    public init(_ byVerdict: [Verdict: UInt64] = [:]) { self.byVerdict = byVerdict }

    public var total: UInt64 { byVerdict.values.reduce(0, +) }
    public static let size = nf_event_counts.size

    public func encode() -> [UInt8] {
        var raw = nf_event_counts()
        ABIArray.set(&raw.by_verdict, to: Verdict.allCases.map { byVerdict[$0] ?? 0 })  // allCases in raw value order: 0, 1, 2
        return raw.bytes
    }

    static func from(_ raw: nf_event_counts) -> EventCounts {
        let values = ABIArray.elements(raw.by_verdict, of: UInt64.self)
        return EventCounts(Dictionary(uniqueKeysWithValues: Verdict.allCases.map { ($0, values[Int($0.rawValue)]) }))
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> EventCounts? { nf_event_counts.load(bytes).map(from) }

    /// What `event_limits` holds for one entry: the events suppressed, by verdict. Nil for an entry
    /// that suppressed none (most of the 8,193: a walk skips them without building counts) or is short.
    public static func suppressed(inLimit bytes: UnsafeRawBufferPointer) -> EventCounts? {
        guard let limit = nf_event_limit.load(bytes), withUnsafeBytes(of: limit.suppressed, { $0.contains { $0 != 0 } }) else { return nil }
        return from(limit.suppressed)
    }
    public static let limitSize = nf_event_limit.size
    /// A limiter entry with nothing in it: a new pod's.
    public static let emptyLimit = nf_event_limit().bytes
}

/// Where a pod's packet counter for one direction and verdict sits in the counters array (`nf_counter_index`), both ways.
public struct CounterIndex: Equatable, Sendable {
    public let podID: UInt32
    public let direction: Direction
    public let verdict: Verdict

    public init(podID: UInt32, direction: Direction, verdict: Verdict) {
        self.podID = podID
        self.direction = direction
        self.verdict = verdict
    }

    /// The pod, direction and verdict an index of the counters array stands for.
    public init(rawValue: UInt32) {
        let directions = UInt32(NF_DIRECTION_COUNT.rawValue)
        podID = rawValue / 2 / directions
        direction = Direction(rawValue: UInt8(rawValue / 2 % directions)) ?? .ingress
        verdict = rawValue % 2 == 1 ? .allow : .deny
    }

    public var rawValue: UInt32 {
        (podID * UInt32(NF_DIRECTION_COUNT.rawValue) + UInt32(direction.rawValue)) * 2 + UInt32(verdict.rawValue)
    }
}

/// Index of a pod's counter in the counters array (nf_counter_index).
public func counterIndex(podID: UInt32, direction: Direction, verdict: Verdict) -> UInt32 {
    CounterIndex(podID: podID, direction: direction, verdict: verdict).rawValue
}

/// `struct nf_packet_counter`: per CPU, packets and bytes.
public enum PacketCounterCodec {
    public static let size = nf_packet_counter.size

    /// Each CPU's (packets, bytes) in a per-CPU value.
    public static func perCPU(_ value: UnsafeRawBufferPointer) -> [(packets: UInt64, bytes: UInt64)] {
        stride(from: 0, to: value.count - size + 1, by: size).map { offset in
            let counter = value.loadUnaligned(fromByteOffset: offset, as: nf_packet_counter.self)
            return (counter.packets, counter.bytes)
        }
    }
}

/// The positions at the start of a CPU's `struct nf_event_ring` (records follow them).
public struct EventRingHeader: Equatable, Sendable {
    /// Bytes the CPU's programs wrote, and bytes the reader gave back.
    public let written: UInt64
    public let read: UInt64
    /// Until when the reader sleeps (CLOCK_MONOTONIC ns; a quarter of the ring rings the doorbell
    /// until then), 0 when it is awake.
    public let readerSleepsUntil: UInt64

    /// Bytes written and not read yet.
    public var waiting: UInt64 { written &- read }

    /// Whether a reader sleeps on the ring at `now` (CLOCK_MONOTONIC ns).
    public func readerAsleep(at now: UInt64) -> Bool { readerSleepsUntil > now }

    public init(written: UInt64, read: UInt64, readerSleepsUntil: UInt64) {
        self.written = written
        self.read = read
        self.readerSleepsUntil = readerSleepsUntil
    }

    public static func decode(_ value: UnsafeRawBufferPointer) -> EventRingHeader? {
        guard value.count == ABISizes.eventRing else { return nil }
        return EventRingHeader(written: value.loadUnaligned(as: UInt64.self), read: value.loadUnaligned(fromByteOffset: nf_event_ring_tail_offset(), as: UInt64.self),
                               readerSleepsUntil: value.loadUnaligned(fromByteOffset: nf_event_ring_reader_sleeps_until_offset(), as: UInt64.self))
    }
}

/// `struct nf_event`: one decision, as its CPU's event ring carries it.
public struct VerdictEvent: Equatable, Sendable {
    public let timestampNanoseconds: UInt64
    public let ifindex: UInt32
    public let podID: UInt32
    public let ruleID: UInt32
    public let length: UInt32
    public let revision: UInt32
    public let source: IPAddress
    public let destination: IPAddress
    public let sourcePort: UInt16
    public let destinationPort: UInt16
    public let direction: Direction
    public let family: UInt8
    public let protocolNumber: UInt8
    public let verdict: Verdict
    public let tier: Tier
    public let reason: Reason
    /// Bytes of the packet the record carries after the event (`packet(in:)`).
    public let captured: Int

    public static let size = nf_event.size

    /// Decodes a ring-buffer record; nil for a record of another size or unknown enum values.
    public static func decode(_ bytes: [UInt8]) -> VerdictEvent? {
        bytes.withUnsafeBytes(decode)
    }

    /// Decodes a ring-buffer record where it lies (the reader's hot path): the event,
    /// then exactly as many bytes of packet as it says it captured.
    public static func decode(_ record: UnsafeRawBufferPointer) -> VerdictEvent? {
        guard record.count >= size, let event = nf_event.load(UnsafeRawBufferPointer(rebasing: record[..<size])),
              record.count == size + Int(event.captured),
              let direction = Direction(rawValue: event.direction), let verdict = Verdict(rawValue: event.verdict),
              let tier = Tier(rawValue: event.tier), let reason = Reason(rawValue: event.reason) else { return nil }
        return VerdictEvent(timestampNanoseconds: event.timestamp_ns, ifindex: event.ifindex, podID: event.pod_id, ruleID: event.rule_id,
                            length: event.length, revision: event.revision, source: IPAddress(field: event.saddr),
                            destination: IPAddress(field: event.daddr), sourcePort: event.sport, destinationPort: event.dport,
                            direction: direction, family: event.family, protocolNumber: event.protocol, verdict: verdict, tier: tier,
                            reason: reason, captured: Int(event.captured))
    }

    /// The captured packet in a record `decode` accepted: its first bytes from the Ethernet header on.
    public static func packet(in record: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: record[min(size, record.count)...])
    }
}

/// `struct nf_conntrack_key` + `struct nf_conntrack_value`: one tracked flow.
public struct ConntrackEntry: Sendable, Equatable {
    public let ifindex: UInt32
    public let family: UInt8
    public let protocolNumber: UInt8
    /// The endpoint that orders lower (address, then port), and the other.
    public let low: IPAddress, lowPort: UInt16
    public let high: IPAddress, highPort: UInt16
    /// CLOCK_MONOTONIC (coarse) of the last packet.
    public let lastSeenNanoseconds: UInt64
    public let revision: UInt32
    public let ruleID: UInt32
    public let podID: UInt32
    /// Direction of the first packet, from the pod's point of view.
    public let direction: Direction
    public let tier: Tier
    public let firstFromHigh: Bool

    public static let keySize = nf_conntrack_key.size
    public static let valueSize = nf_conntrack_value.size

    /// Decodes one entry where the batch read put it; nil for bytes of another layout.
    public static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> ConntrackEntry? {
        guard let k = nf_conntrack_key.load(key), let v = nf_conntrack_value.load(value),
              let direction = Direction(rawValue: v.direction), let tier = Tier(rawValue: v.tier) else { return nil }
        return ConntrackEntry(
            ifindex: k.ifindex, family: k.family, protocolNumber: k.protocol, low: IPAddress(field: k.addr_low), lowPort: k.port_low,
            high: IPAddress(field: k.addr_high), highPort: k.port_high, lastSeenNanoseconds: v.last_seen_ns, revision: v.revision,
            ruleID: v.rule_id, podID: v.pod_id, direction: direction, tier: tier,
            firstFromHigh: v.flags & UInt8(NF_CONNTRACK_FIRST_FROM_HIGH) != 0)
    }

    /// The bytes the datapath writes for this entry: `struct nf_conntrack_key` and `nf_conntrack_value`.
    public func encode() -> (key: [UInt8], value: [UInt8]) {
        var key = nf_conntrack_key()
        key.ifindex = ifindex
        key.family = family
        key.protocol = protocolNumber
        low.store(in: &key.addr_low)
        high.store(in: &key.addr_high)
        key.port_low = lowPort
        key.port_high = highPort
        var value = nf_conntrack_value()
        value.last_seen_ns = lastSeenNanoseconds
        value.revision = revision
        value.rule_id = ruleID
        value.pod_id = podID
        value.direction = direction.rawValue
        value.tier = tier.rawValue
        value.flags = firstFromHigh ? UInt8(NF_CONNTRACK_FIRST_FROM_HIGH) : 0
        return (key.bytes, value.bytes)
    }

    /// The same flow state with another low endpoint (benchmarks and tests fill tables with it).
    public func withLowEndpoint(_ address: IPAddress, port: UInt16, lastSeenNanoseconds lastSeen: UInt64) -> ConntrackEntry {
        ConntrackEntry(ifindex: ifindex, family: family, protocolNumber: protocolNumber, low: address, lowPort: port, high: high,
                       highPort: highPort, lastSeenNanoseconds: lastSeen, revision: revision, ruleID: ruleID, podID: podID,
                       direction: direction, tier: tier, firstFromHigh: firstFromHigh)
    }

    /// The endpoint that sent the flow's first packet, and the one it went to.
    public var source: (address: IPAddress, port: UInt16) { firstFromHigh ? (high, highPort) : (low, lowPort) }
    public var destination: (address: IPAddress, port: UInt16) { firstFromHigh ? (low, lowPort) : (high, highPort) }
}

/// `struct nf_fragment_key` + `struct nf_fragment_value`: a first fragment's verdict, kept for the datagram's later fragments.
public struct FragmentVerdict: Sendable, Equatable {
    public let ifindex: UInt32
    /// The datagram's IPv4 identification or IPv6 fragment identification.
    public let identification: UInt32
    public let family: UInt8
    public let protocolNumber: UInt8
    public let source: IPAddress, sourcePort: UInt16
    public let destination: IPAddress, destinationPort: UInt16
    public let ruleID: UInt32
    public let verdict: Verdict
    public let tier: Tier

    /// Decodes one entry where the batch read put it; nil for bytes of another layout.
    public static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> FragmentVerdict? {
        guard let k = nf_fragment_key.load(key), let v = nf_fragment_value.load(value), let verdict = Verdict(rawValue: v.verdict),
              let tier = Tier(rawValue: v.tier) else { return nil }
        return FragmentVerdict(ifindex: k.ifindex, identification: k.id, family: k.family, protocolNumber: k.protocol,
                               source: IPAddress(field: k.saddr), sourcePort: v.sport, destination: IPAddress(field: k.daddr),
                               destinationPort: v.dport, ruleID: v.rule_id, verdict: verdict, tier: tier)
    }
}

/// `struct nf_hit_key` + per-CPU `struct nf_hit_value`: the new flows one rule decided
/// for one pod in one direction (rule id 0: the pod's isolation or default, by tier);
/// `audit`: the new flows audit objects would have decided otherwise.
public struct RuleHit: Equatable, Sendable {
    public let ruleID: UInt32
    public let podID: UInt32
    public let direction: Direction
    public let tier: Tier
    public let audit: Bool
    public let allowed: UInt64
    public let denied: UInt64
    /// CLOCK_MONOTONIC (coarse) of the last new flow it decided.
    public let lastNanoseconds: UInt64

    public static let keySize = nf_hit_key.size
    public static let valueSize = nf_hit_value.size

    public init(ruleID: UInt32, podID: UInt32, direction: Direction, tier: Tier, audit: Bool = false, allowed: UInt64, denied: UInt64,
                lastNanoseconds: UInt64) {
        self.ruleID = ruleID
        self.podID = podID
        self.direction = direction
        self.tier = tier
        self.audit = audit
        self.allowed = allowed
        self.denied = denied
        self.lastNanoseconds = lastNanoseconds
    }

    /// The map key of this hit.
    public var key: [UInt8] {
        var key = nf_hit_key()
        key.rule_id = ruleID
        key.pod_id = podID
        key.direction = direction.rawValue
        key.tier = tier.rawValue
        key.audit = audit ? 1 : 0
        return key.bytes
    }

    /// One entry where a batch read put it: its key, and each CPU's value one after another,
    /// summed (the latest last match of any CPU); nil for bytes of another layout.
    public static func decode(key: UnsafeRawBufferPointer, perCPUValue value: UnsafeRawBufferPointer) -> RuleHit? {
        guard let k = nf_hit_key.load(key), let direction = Direction(rawValue: k.direction), let tier = Tier(rawValue: k.tier),
              value.count >= valueSize, value.count % valueSize == 0 else { return nil }
        var allowed: UInt64 = 0, denied: UInt64 = 0, last: UInt64 = 0
        for offset in stride(from: 0, to: value.count, by: valueSize) {
            let share = value.loadUnaligned(fromByteOffset: offset, as: nf_hit_value.self)
            allowed &+= share.allowed
            denied &+= share.denied
            last = max(last, share.last_ns)
        }
        return RuleHit(ruleID: k.rule_id, podID: k.pod_id, direction: direction, tier: tier, audit: k.audit != 0, allowed: allowed, denied: denied,
                       lastNanoseconds: last)
    }
}

/// What the loaded program decided for an explain test run (`NF_EXPLAIN_MARK`,
/// `NF_EXPLAIN_COOKIE`): a new flow judged with no side effect, read back from
/// the context's `cb` words.
public struct ExplainedDecision: Equatable, Sendable {
    public let decision: Decision
    public let reason: Reason
    /// With audit objects enforced; nil when none select the pod.
    public let audit: Decision?
    public let auditReason: Reason?

    /// `skb->mark` and `cb[0]` of an explain run.
    public static let mark = UInt32(NF_EXPLAIN_MARK), cookie = UInt32(NF_EXPLAIN_COOKIE)
    /// The context an explain run starts with.
    public static let contextIn: [UInt32] = [cookie, 0, 0, 0, 0]

    /// The decision in `cb` as the program left it; nil when it judged nothing (no pod on the
    /// interface, or not a new flow's packet) or the words are not a decision.
    public static func decode(cb: [UInt32]) -> ExplainedDecision? {
        guard cb.count == 5, cb[2] != NF_EXPLAIN_NONE, let (decision, reason) = unpack(cb[2], rule: cb[1]) else { return nil }
        let audit = cb[3] == NF_EXPLAIN_NONE ? nil : unpack(cb[3], rule: cb[4])
        return ExplainedDecision(decision: decision, reason: reason, audit: audit?.0, auditReason: audit?.1)
    }

    /// verdict | tier << 8 | reason << 16, as the program packs it.
    private static func unpack(_ word: UInt32, rule: UInt32) -> (Decision, Reason)? {
        guard let verdict = Verdict(rawValue: UInt8(word & 0xff)), let tier = Tier(rawValue: UInt8(word >> 8 & 0xff)),
              let reason = Reason(rawValue: UInt8(word >> 16 & 0xff)) else { return nil }
        return (Decision(verdict: verdict, tier: tier, ruleID: rule), reason)
    }
}
