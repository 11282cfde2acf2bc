import CNetfenceABI

/// The datapath's limits, as `bpf/netfence_abi.h` defines them.
public enum DatapathLimits {
    public static let rulesPerPrefix = Int(NF_MAX_RULES_PER_PREFIX)
    public static let prefixesPerPod = Int(NF_MAX_PREFIXES)
    public static let pods = Int(NF_MAX_PODS)
    public static let conntrackEntries = Int(NF_CONNTRACK_ENTRIES)
    public static let eventRingBytes = Int(NF_EVENT_RING_BYTES)
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
    public static let conntrackKey = MemoryLayout<nf_conntrack_key>.size
    public static let conntrackValue = MemoryLayout<nf_conntrack_value>.size
    public static let fragmentKey = MemoryLayout<nf_fragment_key>.size
    public static let fragmentValue = MemoryLayout<nf_fragment_value>.size
    public static let settings = MemoryLayout<nf_settings>.size
    public static let packetCounter = MemoryLayout<nf_packet_counter>.size
    public static let domainRuleKey = MemoryLayout<nf_domain_rule_key>.size
    public static let domainGrantKey = MemoryLayout<nf_domain_grant_key>.size
    public static let domainGrant = MemoryLayout<nf_domain_grant>.size
    public static let dnsProxy = MemoryLayout<nf_dns_proxy>.size
}

/// Which way traffic crosses the pod's host veth, from the pod's point of view.
public enum Direction: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case ingress = 0, egress = 1
    public var name: StaticString { self == .ingress ? "ingress" : "egress" }
    public var description: String { name.description }
}

/// Policy tiers, in evaluation order.
public enum Tier: UInt8, Sendable, CustomStringConvertible {
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
    public var description: String { name.description }
}

/// What a rule does. At equal priority Deny beats Accept beats Pass.
public enum RuleAction: UInt8, Sendable, CustomStringConvertible {
    case deny = 0, accept = 1, pass = 2
    public var name: StaticString {
        switch self {
        case .deny: "deny"
        case .accept: "accept"
        case .pass: "pass"
        }
    }
    public var description: String { name.description }
}

/// What a pod does in a direction when no Admin rule decides.
public enum PodState: UInt8, Sendable, CustomStringConvertible {
    case defaultAllow = 0, defaultDeny = 1, policiesApplied = 2
    public var name: StaticString {
        switch self {
        case .defaultAllow: "default-allow"
        case .defaultDeny: "default-deny"
        case .policiesApplied: "policies-applied"
        }
    }
    public var description: String { name.description }
}

public enum Verdict: UInt8, Sendable {
    case deny = 0, allow = 1
}

/// Why a verdict was reached (events).
public enum Reason: UInt8, Sendable {
    case policy = 0, reevaluated = 1, related = 2, fragment = 3, unparseable = 4, noFirstFragment = 5
    /// The pod resolved the peer by a domain rule, but the grant's TTL ran out.
    case domainExpired = 6
    /// DNS of a pod with domain rules: to the DNS proxy, or to another resolver.
    case dnsProxy = 7, dnsBypass = 8
    /// The pod resolved the peer by a domain rule, but no DNS proxy is alive (fail closed).
    case dnsProxyDown = 9

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
        }
    }
}

extension Reason: CustomStringConvertible {
    public var description: String { name.description }
}

/// Which verdicts produce events.
public enum EventLevel: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0, deny = 1, all = 2
    public var name: StaticString {
        switch self {
        case .none: "none"
        case .deny: "deny"
        case .all: "all"
        }
    }
    public var description: String { name.description }
}

/// Node-wide counters in the stats map.
public enum DatapathStat: UInt32, CaseIterable, Sendable {
    case eventsLost = 0, unparseableDrops = 1, unknownInterface = 2, conntrackFull = 3
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

    public init(ruleID: UInt32, protocolNumber: UInt8, portStart: UInt16 = 0, portEnd: UInt16? = nil,
                tier: Tier = .networkPolicy, priority: UInt16 = 0, action: RuleAction = .accept) {
        self.ruleID = ruleID
        self.protocolNumber = protocolNumber
        self.portStart = portStart
        self.portEnd = portEnd ?? portStart
        self.tier = tier
        self.priority = priority
        self.action = action
    }

    /// Whether a packet of `protocolNumber` to `port` matches.
    public func matches(protocolNumber packetProtocol: UInt8, port: UInt16) -> Bool {
        (protocolNumber == IPProtocolNumber.any || protocolNumber == packetProtocol)
            && (portStart == 0 || (port >= portStart && port <= portEnd))
    }

    static let size = MemoryLayout<nf_port_rule>.size

    func encode(into writer: inout ByteWriter) {
        writer.append(ruleID)
        writer.append(portStart)
        writer.append(portEnd)
        writer.append(priority)
        writer.append(protocolNumber)
        writer.append(tier.rawValue)
        writer.append(action.rawValue)
        writer.pad(3)
    }

    static func decode(_ reader: ByteReader, at offset: Int) -> PortRule? {
        guard let id = reader.integer(UInt32.self, at: offset), let start = reader.integer(UInt16.self, at: offset + 4),
              let end = reader.integer(UInt16.self, at: offset + 6), let priority = reader.integer(UInt16.self, at: offset + 8),
              let proto = reader.integer(UInt8.self, at: offset + 10), let tier = reader.integer(UInt8.self, at: offset + 11).flatMap(Tier.init),
              let action = reader.integer(UInt8.self, at: offset + 12).flatMap(RuleAction.init) else { return nil }
        return PortRule(ruleID: id, protocolNumber: proto, portStart: start, portEnd: end, tier: tier, priority: priority, action: action)
    }
}

/// `struct nf_rule_set`: the value of a trie entry.
public enum RuleSetCodec {
    public static let size = MemoryLayout<nf_rule_set>.size

    /// The 520 bytes of a rule set; the caller checked `rules.count <= rulesPerPrefix`.
    public static func encode(_ rules: [PortRule]) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt32(rules.count))
        writer.pad(4)
        for rule in rules { rule.encode(into: &writer) }
        writer.pad(toSize: size)
        return writer.bytes
    }

    /// The rules of a trie value, or nil when the bytes are not a rule set.
    public static func decode(_ bytes: [UInt8]) -> [PortRule]? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let count = reader.integer(UInt32.self, at: 0), count <= DatapathLimits.rulesPerPrefix else { return nil }
        let rules = (0..<Int(count)).map { PortRule.decode(reader, at: 8 + $0 * PortRule.size) }
        return rules.contains(where: { $0 == nil }) ? nil : rules.compactMap { $0 }
    }
}

/// `struct nf_lpm_key`: a prefix as the trie keys it, its family first.
public enum LPMKeyCodec {
    public static let size = MemoryLayout<nf_lpm_key>.size
    static let familyBits = Int(NF_LPM_FAMILY_BITS)
    static let addressOffset = MemoryLayout<nf_lpm_key>.offset(of: \.address)!

    public static func encode(_ prefix: IPPrefix) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt32(familyBits + prefix.length))
        writer.append(prefix.family.rawValue)
        writer.append(prefix.address.bytes)
        writer.pad(toSize: size)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> IPPrefix? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let bits = reader.integer(UInt32.self, at: 0), bits >= familyBits, bits <= familyBits + 128,
              let family = reader.integer(UInt8.self, at: 4).flatMap(AddressFamily.init), let address = reader.slice(at: addressOffset, count: 16)
        else { return nil }
        let length = Int(bits) - familyBits
        guard family == .ipv6 || length >= 96 else { return nil }
        return IPPrefix(address: IPAddress(bytes: address), length: length, family: family)
    }
}

/// `struct nf_pod`: the pod behind a host veth.
public struct PodRecord: Equatable, Sendable {
    public var podID: UInt32
    public var revision: UInt32
    public var slot: UInt8
    public var states: [Direction: PodState]
    /// Egress rules by domain name: DNS only to a DNS proxy, grants consulted (NF_POD_DOMAIN_RULES).
    public var hasDomainRules: Bool

    public init(podID: UInt32, revision: UInt32 = 0, slot: UInt8 = 0,
                states: [Direction: PodState] = [.ingress: .defaultAllow, .egress: .defaultAllow], hasDomainRules: Bool = false) {
        self.podID = podID
        self.revision = revision
        self.slot = slot
        self.states = states
        self.hasDomainRules = hasDomainRules
    }

    public static let size = MemoryLayout<nf_pod>.size

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(podID)
        writer.append(revision)
        writer.append(slot)
        writer.append(states[.ingress, default: .defaultAllow].rawValue)
        writer.append(states[.egress, default: .defaultAllow].rawValue)
        writer.append(hasDomainRules ? UInt8(NF_POD_DOMAIN_RULES) : 0)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> PodRecord? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let id = reader.integer(UInt32.self, at: 0), let revision = reader.integer(UInt32.self, at: 4),
              let slot = reader.integer(UInt8.self, at: 8),
              let ingress = reader.integer(UInt8.self, at: 9).flatMap(PodState.init),
              let egress = reader.integer(UInt8.self, at: 10).flatMap(PodState.init),
              let flags = reader.integer(UInt8.self, at: 11) else { return nil }
        return PodRecord(podID: id, revision: revision, slot: slot, states: [.ingress: ingress, .egress: egress],
                         hasDomainRules: flags & UInt8(NF_POD_DOMAIN_RULES) != 0)
    }
}

/// Where a pod's trie for one direction and slot sits in the policies array (nf_policy_index).
public func policyIndex(podID: UInt32, direction: Direction, slot: UInt8) -> UInt32 {
    ((podID * UInt32(NF_DIRECTION_COUNT.rawValue) + UInt32(direction.rawValue)) << 1) | UInt32(slot & 1)
}

/// `struct nf_settings`.
public enum SettingsCodec {
    public static func encode(eventLevel: EventLevel) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(eventLevel.rawValue)
        writer.pad(toSize: MemoryLayout<nf_settings>.size)
        return writer.bytes
    }

    /// The event level in a settings value; nil for bytes of another size or an unknown level.
    public static func eventLevel(_ bytes: [UInt8]) -> EventLevel? {
        guard bytes.count == MemoryLayout<nf_settings>.size else { return nil }
        return ByteReader(bytes).integer(UInt32.self, at: 0).flatMap(EventLevel.init)
    }
}

/// Index of a pod's counter in the counters array (nf_counter_index).
public func counterIndex(podID: UInt32, direction: Direction, verdict: Verdict) -> UInt32 {
    (podID * UInt32(NF_DIRECTION_COUNT.rawValue) + UInt32(direction.rawValue)) * 2 + UInt32(verdict.rawValue)
}

/// `struct nf_event`: one decision, as the ring buffer carries it.
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

    public static let size = MemoryLayout<nf_event>.size

    /// Decodes a ring-buffer record; nil for a record of another size or unknown enum values.
    public static func decode(_ bytes: [UInt8]) -> VerdictEvent? {
        bytes.withUnsafeBytes(decode)
    }

    /// Decodes a ring-buffer record where it lies (the reader's hot path).
    public static func decode(_ record: UnsafeRawBufferPointer) -> VerdictEvent? {
        guard record.count == size,
              let direction = Direction(rawValue: record[64]), let verdict = Verdict(rawValue: record[67]),
              let tier = Tier(rawValue: record[68]), let reason = Reason(rawValue: record[69]) else { return nil }
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { record.loadUnaligned(fromByteOffset: offset, as: T.self) }
        return VerdictEvent(timestampNanoseconds: load(0, UInt64.self), ifindex: load(8, UInt32.self), podID: load(12, UInt32.self),
                            ruleID: load(16, UInt32.self), length: load(20, UInt32.self), revision: load(24, UInt32.self),
                            source: IPAddress(record, at: 28), destination: IPAddress(record, at: 44),
                            sourcePort: load(60, UInt16.self), destinationPort: load(62, UInt16.self), direction: direction,
                            family: record[65], protocolNumber: record[66], verdict: verdict, tier: tier, reason: reason)
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

    public static let keySize = MemoryLayout<nf_conntrack_key>.size
    public static let valueSize = MemoryLayout<nf_conntrack_value>.size

    /// Field offsets, from the C structs (read once: a key-path offset is a runtime call).
    private static let keyOffsets = (
        ifindex: MemoryLayout<nf_conntrack_key>.offset(of: \.ifindex)!, family: MemoryLayout<nf_conntrack_key>.offset(of: \.family)!,
        proto: MemoryLayout<nf_conntrack_key>.offset(of: \.protocol)!, low: MemoryLayout<nf_conntrack_key>.offset(of: \.addr_low)!,
        high: MemoryLayout<nf_conntrack_key>.offset(of: \.addr_high)!, lowPort: MemoryLayout<nf_conntrack_key>.offset(of: \.port_low)!,
        highPort: MemoryLayout<nf_conntrack_key>.offset(of: \.port_high)!)
    private static let valueOffsets = (
        lastSeen: MemoryLayout<nf_conntrack_value>.offset(of: \.last_seen_ns)!, revision: MemoryLayout<nf_conntrack_value>.offset(of: \.revision)!,
        rule: MemoryLayout<nf_conntrack_value>.offset(of: \.rule_id)!, pod: MemoryLayout<nf_conntrack_value>.offset(of: \.pod_id)!,
        direction: MemoryLayout<nf_conntrack_value>.offset(of: \.direction)!, tier: MemoryLayout<nf_conntrack_value>.offset(of: \.tier)!,
        flags: MemoryLayout<nf_conntrack_value>.offset(of: \.flags)!)

    /// Decodes one entry where the batch read put it; nil for bytes of another layout.
    public static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> ConntrackEntry? {
        let k = keyOffsets, v = valueOffsets
        guard key.count == keySize, value.count >= valueSize,
              let direction = Direction(rawValue: value[v.direction]), let tier = Tier(rawValue: value[v.tier]) else { return nil }
        return ConntrackEntry(
            ifindex: key.loadUnaligned(fromByteOffset: k.ifindex, as: UInt32.self), family: key[k.family], protocolNumber: key[k.proto],
            low: IPAddress(key, at: k.low), lowPort: key.loadUnaligned(fromByteOffset: k.lowPort, as: UInt16.self),
            high: IPAddress(key, at: k.high), highPort: key.loadUnaligned(fromByteOffset: k.highPort, as: UInt16.self),
            lastSeenNanoseconds: value.loadUnaligned(fromByteOffset: v.lastSeen, as: UInt64.self),
            revision: value.loadUnaligned(fromByteOffset: v.revision, as: UInt32.self),
            ruleID: value.loadUnaligned(fromByteOffset: v.rule, as: UInt32.self), podID: value.loadUnaligned(fromByteOffset: v.pod, as: UInt32.self),
            direction: direction, tier: tier, firstFromHigh: value[v.flags] & UInt8(NF_CONNTRACK_FIRST_FROM_HIGH) != 0)
    }

    /// The bytes the datapath writes for this entry: `struct nf_conntrack_key` and `nf_conntrack_value`.
    public func encode() -> (key: [UInt8], value: [UInt8]) {
        var key = nf_conntrack_key()
        key.ifindex = ifindex
        key.family = family
        key.protocol = protocolNumber
        low.withBytes { bytes in withUnsafeMutableBytes(of: &key.addr_low) { $0.copyMemory(from: bytes) } }
        high.withBytes { bytes in withUnsafeMutableBytes(of: &key.addr_high) { $0.copyMemory(from: bytes) } }
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
        return (withUnsafeBytes(of: key) { Array($0) }, withUnsafeBytes(of: value) { Array($0) })
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
