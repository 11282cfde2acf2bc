import CNetfenceABI

/// The Amazon VPC CNI network-policy agent's datapath as netfence reads it on an
/// EKS node (shared guide FACTS.md; the agent's `pkg/ebpf/c/*.bpf.c`): where it
/// pins, what its maps hold (the structs of `bpf/aws_agent_abi.h`), and one name
/// for each of its values. On a real node its SDK creates maps and programs
/// without kernel names: the pin is the identity.
public enum AWSAgent {
    /// Where the agent pins everything.
    public static let root = "/sys/fs/bpf/globals/aws"
    public static let mapsFolder = "\(root)/maps"
    public static let programsFolder = "\(root)/programs"

    /// Port-rule slots in one trie value; the datapath scans all of them (a used slot may follow an empty one).
    public static let slots = Int(AWS_SLOTS)
    public static let anyProtocol = UInt32(AWS_PROTOCOL_ANY)
    /// A slot with this protocol denies (the agent writes except blocks so).
    public static let reservedProtocol = UInt32(AWS_PROTOCOL_RESERVED)
    /// Cluster-policy priorities at or below this are the Admin tier; Baseline's are offset by 2000.
    public static let adminPriorityLimit = UInt32(AWS_ADMIN_PRIORITY_LIMIT)
    public static let baselinePriorityOffset = UInt32(AWS_BASELINE_PRIORITY_OFFSET)
    /// The priority field is `priority × this + action`.
    static let priorityActionBase = UInt32(AWS_PRIORITY_ACTION_BASE)

    /// What one of the agent's objects is, by the name it is pinned under.
    public enum Object: String, CaseIterable, Sendable {
        case ingressMap = "ingress_map", egressMap = "egress_map"
        case clusterIngressMap = "cp_ingress_map", clusterEgressMap = "cp_egress_map"
        case ingressPodStateMap = "ingress_pod_state_map", egressPodStateMap = "egress_pod_state_map"
        case conntrackMap = "aws_conntrack_map", policyEvents = "policy_events"
        case ingressProgram = "handle_ingress", egressProgram = "handle_egress"

        /// The pod's direction it serves (its view), for per-pod objects.
        public var direction: Direction? {
            switch self {
            case .ingressMap, .clusterIngressMap, .ingressPodStateMap, .ingressProgram: .ingress
            case .egressMap, .clusterEgressMap, .egressPodStateMap, .egressProgram: .egress
            case .conntrackMap, .policyEvents: nil
            }
        }

        public var isProgram: Bool { self == .ingressProgram || self == .egressProgram }

        /// The object a kernel name stands for: the full name, or its first 15 characters
        /// (the kernel cuts names so); nil for an empty or foreign name.
        public init?(kernelName name: String) {
            guard !name.isEmpty, let object = Self.allCases.first(where: {
                $0.rawValue == name || ($0.rawValue.count > 15 && String($0.rawValue.prefix(15)) == name)
            }) else { return nil }
            self = object
        }
    }

    /// A pin of the agent's, read from its path: `<podId>_<object>` or `global_<object>`.
    public struct Pin: Equatable, Sendable {
        public let path: String
        public let object: Object
        /// `client-7c79c4bf97@default`; nil for the node-wide maps (conntrack, events).
        public let podIdentifier: String?

        /// nil for a path that is not one of the agent's object pins.
        public init?(path: String) {
            let file = path.split(separator: "/").last.map(String.init) ?? path
            // Longest names first: `x_cp_ingress_map` also ends in `_ingress_map`.
            for object in Object.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count }) {
                if file == "global_\(object.rawValue)" {
                    self.path = path
                    self.object = object
                    podIdentifier = nil
                    return
                }
                let suffix = "_\(object.rawValue)"
                if file.hasSuffix(suffix), file.count > suffix.count {
                    self.path = path
                    self.object = object
                    podIdentifier = String(file.dropLast(suffix.count))
                    return
                }
            }
            return nil
        }

        public var direction: Direction? { object.direction }
    }

    /// The pod identifier the agent pins a pod's objects under: the pod name without its
    /// last `-segment` (the ReplicaSet's hash), `.` replaced by `_`, then `@namespace`.
    public static func podIdentifier(namespace: String, name: String) -> String {
        let dotless = String(name.map { $0 == "." ? "_" : $0 })
        let parts = dotless.split(separator: "-", omittingEmptySubsequences: false)
        let prefix = parts.count > 1 ? parts.dropLast().joined(separator: "-") : dotless
        return "\(prefix)@\(namespace)"
    }

    /// A trie value's sizes: network policy (protocol, start, end) and cluster policy (protocol, priority, start, end).
    public static let policyValueBytes = slots * aws_trie_slot.size
    public static let clusterPolicyValueBytes = slots * aws_cp_trie_slot.size
    /// Key sizes: `{u32 prefixlen; u8 ip[4|16]}`.
    public static let ipv4TrieKeyBytes = aws_trie_key.size, ipv6TrieKeyBytes = aws_trie_key_v6.size
    /// Conntrack key sizes (v4, v6) and its value `{u64 val; u64 last_seen_ns}`.
    public static let ipv4ConntrackKeyBytes = aws_conntrack_key.size, ipv6ConntrackKeyBytes = aws_conntrack_key_v6.size
    public static let conntrackValueBytes = aws_conntrack_value.size
    /// Event record sizes (`struct data_t`, v4 and v6).
    public static let ipv4EventBytes = aws_event.size, ipv6EventBytes = aws_event_v6.size
}

/// `*_pod_state_map` keys: which policy the state is for (`enum aws_policy_kind`).
public enum AWSPolicyKind: UInt32, ABIName {
    case networkPolicy = 0, clusterPolicy = 1
    public var name: StaticString { self == .networkPolicy ? "network-policy" : "cluster-policy" }
}

/// `*_pod_state_map` values: what the agent's pod does in a direction (its numbering).
public enum AWSPodState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case policiesApplied = 0, defaultAllow = 1, defaultDeny = 2 // enum aws_pod_state

    /// The same state in netfence's words.
    public var podState: PodState {
        switch self {
        case .policiesApplied: .policiesApplied
        case .defaultAllow: .defaultAllow
        case .defaultDeny: .defaultDeny
        }
    }

    public var description: String { podState.description }
}

/// A rule slot of one of the agent's trie values.
public struct AWSPolicySlot: Equatable, Sendable {
    public let protocolNumber: UInt32
    public let startPort: UInt32
    /// 0: a single port (or every port when `startPort` is 0 too).
    public let endPort: UInt32
    /// Cluster policy only: `rule priority × 10 + action`, Baseline's offset by 2000.
    public let encodedPriority: UInt32?

    public var isUsed: Bool { protocolNumber != 0 }
    /// A RESERVED slot denies (except blocks).
    public var isReserved: Bool { protocolNumber == AWSAgent.reservedProtocol }
    public var matchesAnyProtocol: Bool { protocolNumber == AWSAgent.anyProtocol }

    /// The rule action the priority field carries (0 deny, 1 accept, 2 pass); nil when it carries another digit.
    public var action: RuleAction? {
        encodedPriority.flatMap { RuleAction(rawValue: UInt8(truncatingIfNeeded: $0 % AWSAgent.priorityActionBase)) }
    }
    /// The tier of a cluster-policy slot by its priority: Admin up to 1000, Baseline from 2000.
    public var tier: Tier {
        guard let encoded = encodedPriority else { return .networkPolicy }
        let priority = encoded / AWSAgent.priorityActionBase
        return priority >= AWSAgent.baselinePriorityOffset ? .baseline : priority <= AWSAgent.adminPriorityLimit ? .admin : .none
    }
    /// The rule's priority within its tier (Baseline's offset taken off).
    public var priority: UInt32? {
        encodedPriority.map { encoded in
            let priority = encoded / AWSAgent.priorityActionBase
            return priority >= AWSAgent.baselinePriorityOffset ? priority - AWSAgent.baselinePriorityOffset : priority
        }
    }

    /// `any`, `80`, `8000-8100`.
    public var portsText: String {
        startPort == 0 ? "any" : endPort == 0 || endPort == startPort ? "\(startPort)" : "\(startPort)-\(endPort)"
    }

    /// The slots of a trie value (every one of the 24, used or not); nil for a value of another size.
    public static func decode(_ value: UnsafeRawBufferPointer, clusterPolicy: Bool) -> [AWSPolicySlot]? {
        if clusterPolicy {
            guard value.count == AWSAgent.clusterPolicyValueBytes else { return nil }
            return (0..<AWSAgent.slots).map { index in
                let slot = value.loadUnaligned(fromByteOffset: index * aws_cp_trie_slot.size, as: aws_cp_trie_slot.self)
                return AWSPolicySlot(protocolNumber: slot.protocol, startPort: slot.start_port, endPort: slot.end_port, encodedPriority: slot.priority)
            }
        }
        guard value.count == AWSAgent.policyValueBytes else { return nil }
        return (0..<AWSAgent.slots).map { index in
            let slot = value.loadUnaligned(fromByteOffset: index * aws_trie_slot.size, as: aws_trie_slot.self)
            return AWSPolicySlot(protocolNumber: slot.protocol, startPort: slot.start_port, endPort: slot.end_port, encodedPriority: nil)
        }
    }
}

/// The agent's conntrack value: one code (`GET_CT_VAL`) for the pair of pod states
/// (network policy, cluster policy) the flow was allowed under; not two halves.
public struct AWSConntrackState: Equatable, Sendable {
    public let code: UInt64

    public init(code: UInt64) { self.code = code }

    /// The pair the code stands for; nil for codes the agent never writes. 7 also stands
    /// for every pair outside the table (strict mode collapses onto it).
    public var states: (networkPolicy: AWSPodState, clusterPolicy: AWSPodState)? {
        switch code {
        case 2: (.defaultAllow, .defaultAllow)
        case 3: (.defaultAllow, .defaultDeny)
        case 4: (.defaultAllow, .policiesApplied)
        case 5: (.policiesApplied, .defaultAllow)
        case 6: (.policiesApplied, .defaultDeny)
        case 7: (.policiesApplied, .policiesApplied)
        default: nil
        }
    }

    /// `np=default-allow cp=default-deny`, or `code 9` for a code the agent never writes.
    public var description: String {
        guard let states else { return "code \(code)" }
        return "np=\(states.networkPolicy) cp=\(states.clusterPolicy)"
    }
}

/// One record of the agent's `policy_events` ring buffer (`struct data_t`).
public struct AWSPolicyEvent: Equatable, Sendable {
    public let family: AddressFamily
    public let source: IPAddress
    public let sourcePort: UInt32
    public let destination: IPAddress
    public let destinationPort: UInt32
    public let protocolNumber: UInt32
    public let verdict: Verdict
    public let packetBytes: UInt32
    /// Seen on the pod's egress (what it sent); else its ingress.
    public let isEgress: Bool
    /// 0 error, 1 admin, 2 network policy, 3 baseline, 4 default: netfence's tier numbering too.
    public let tier: Tier?

    /// A record by its size: 32 bytes IPv4 (`struct aws_event`), 56 IPv6 (`aws_event_v6`); nil for any other.
    public static func decode(_ record: UnsafeRawBufferPointer) -> AWSPolicyEvent? {
        if let e = aws_event.load(record) {
            return AWSPolicyEvent(family: .ipv4, source: IPAddress(networkOrderIPv4: e.src_ip), sourcePort: e.src_port,
                                  destination: IPAddress(networkOrderIPv4: e.dest_ip), destinationPort: e.dest_port, protocolNumber: e.protocol,
                                  verdict: e.verdict == 1 ? .allow : .deny, packetBytes: e.packet_sz, isEgress: e.is_egress != 0,
                                  tier: Tier(rawValue: e.tier))
        }
        guard let e = aws_event_v6.load(record) else { return nil }
        return AWSPolicyEvent(family: .ipv6, source: IPAddress(field: e.src_ip), sourcePort: e.src_port, destination: IPAddress(field: e.dest_ip),
                              destinationPort: e.dest_port, protocolNumber: e.protocol, verdict: e.verdict == 1 ? .allow : .deny,
                              packetBytes: e.packet_sz, isEgress: e.is_egress != 0, tier: Tier(rawValue: e.tier))
    }

    /// The pod's end of the flow: the source of what it sends, the destination of what it receives.
    public var podAddress: IPAddress { isEgress ? source : destination }
}

/// A key of the agent's tries (`struct aws_trie_key`, `aws_trie_key_v6`).
public enum AWSTrieKey {
    /// The address and the prefix length as the agent wrote them; nil for a key of another size.
    public static func decode(_ key: UnsafeRawBufferPointer) -> (address: IPAddress, family: AddressFamily, prefixLength: UInt32)? {
        if let k = aws_trie_key.load(key) { return (IPAddress(ipv4Field: k.ip), .ipv4, k.prefixlen) }
        guard let k = aws_trie_key_v6.load(key) else { return nil }
        return (IPAddress(field: k.ip), .ipv6, k.prefixlen)
    }

    /// The prefix a key holds, its length cut to its family's width.
    public static func prefix(_ key: UnsafeRawBufferPointer) -> IPPrefix? {
        guard let (address, family, length) = decode(key) else { return nil }
        return family == .ipv4 ? IPPrefix(address: address, length: 96 + min(Int(length), 32), family: .ipv4)
            : IPPrefix(address: address, length: min(Int(length), 128), family: .ipv6)
    }
}

/// An entry of the agent's `global_aws_conntrack_map` (either family).
public struct AWSConntrackEntry: Sendable {
    public let family: AddressFamily
    public let source: IPAddress, sourcePort: UInt16
    public let destination: IPAddress, destinationPort: UInt16
    public let protocolNumber: UInt8
    /// The pod's address (its end of the flow).
    public let owner: IPAddress
    /// The host interface the flow was seen on.
    public let ifindex: UInt32
    public let state: AWSConntrackState
    public let lastSeenNanoseconds: UInt64

    /// An entry where the batch read put it: `struct aws_conntrack_key` (24 B) or `_v6` (60 B) and
    /// `aws_conntrack_value`; nil for bytes of another layout.
    public static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> AWSConntrackEntry? {
        guard let v = aws_conntrack_value.load(value) else { return nil }
        let state = AWSConntrackState(code: v.val)
        if let k = aws_conntrack_key.load(key) {
            return AWSConntrackEntry(family: .ipv4, source: IPAddress(networkOrderIPv4: k.src_ip), sourcePort: k.src_port,
                                     destination: IPAddress(networkOrderIPv4: k.dest_ip), destinationPort: k.dest_port, protocolNumber: k.protocol,
                                     owner: IPAddress(networkOrderIPv4: k.owner_ip), ifindex: k.ifindex, state: state, lastSeenNanoseconds: v.last_seen)
        }
        guard let k = aws_conntrack_key_v6.load(key) else { return nil }
        return AWSConntrackEntry(family: .ipv6, source: IPAddress(field: k.src_ip), sourcePort: k.src_port, destination: IPAddress(field: k.dest_ip),
                                 destinationPort: k.dest_port, protocolNumber: k.protocol, owner: IPAddress(field: k.owner_ip), ifindex: k.ifindex,
                                 state: state, lastSeenNanoseconds: v.last_seen)
    }
}

extension aws_trie_key: ABIStruct {}
extension aws_trie_key_v6: ABIStruct {}
extension aws_trie_slot: ABIStruct {}
extension aws_cp_trie_slot: ABIStruct {}
extension aws_conntrack_key: ABIStruct {}
extension aws_conntrack_key_v6: ABIStruct {}
extension aws_conntrack_value: ABIStruct {}
extension aws_event: ABIStruct {}
extension aws_event_v6: ABIStruct {}

extension IPAddress {
    /// An IPv4 address kept as a `__u32` in network order (the agent's keys and records).
    init(networkOrderIPv4 value: UInt32) {
        self.init(ipv4: withUnsafeBytes(of: value) { Array($0) })
    }

    /// An IPv4 address in a 4-byte field (`__u8 ip[4]`).
    init<Field>(ipv4Field field: Field) {
        self.init(ipv4: withUnsafeBytes(of: field) { Array($0.prefix(4)) })
    }
}

/// The AWS agent's decision for a new flow (its tc programs' `evaluateFlow`), from
/// what its maps hold for the pod and the peer: the reference `policy explain --aws`
/// explains with. Read-only: nothing of the agent's can be run without its effects.
///
/// 1. Cluster policy: over the matching slots of the peer's `cp_*_map` entry, the lowest
///    priority wins and, at equal priority, Deny before Accept before Pass. At or below
///    priority 1000 (Admin) a Deny or Accept decides.
/// 2. Network policy (`*_map`): no entry for the peer passes on unless the pod's network-policy
///    state is `policies-applied` (then deny); with an entry, the slots in order: a RESERVED
///    one denies, the first matching one allows, none denies, whatever the pod's state.
/// 3. Baseline (the lowest matching priority above 1000): a Deny or Accept decides.
/// 4. The pod's network-policy state: default allow or default deny.
public enum AWSPolicyEvaluator {
    public struct Outcome: Equatable, Sendable {
        public let verdict: Verdict
        /// 1 admin, 2 network policy, 3 baseline, 4 default: the tier the agent's event reports.
        public let tier: Tier
        /// The slot that decided, when one did: its index in the cluster-policy or network-policy value.
        public let slot: Int?
        public let clusterPolicy: Bool
    }

    public static func decide(clusterSlots: [AWSPolicySlot]?, policySlots: [AWSPolicySlot]?, networkPolicyState: AWSPodState,
                              protocolNumber: UInt8, port: UInt16) -> Outcome {
        var admin: (priority: UInt32, action: UInt32, slot: Int)?
        var baseline: (priority: UInt32, action: UInt32, slot: Int)?
        for (index, slot) in (clusterSlots ?? []).enumerated() where slot.matchesClusterPolicy(protocolNumber: protocolNumber, port: port) {
            let encoded = slot.encodedPriority ?? 0
            let priority = encoded / AWSAgent.priorityActionBase, action = encoded % AWSAgent.priorityActionBase
            if admin.map({ priority < $0.priority || (priority == $0.priority && action < $0.action) }) ?? true { admin = (priority, action, index) }
            if priority > AWSAgent.adminPriorityLimit,
               baseline.map({ priority < $0.priority || (priority == $0.priority && action < $0.action) }) ?? true {
                baseline = (priority, action, index)
            }
        }
        if let admin, admin.priority <= AWSAgent.adminPriorityLimit, admin.action != UInt32(RuleAction.pass.rawValue) {
            return Outcome(verdict: admin.action == UInt32(RuleAction.accept.rawValue) ? .allow : .deny, tier: .admin, slot: admin.slot, clusterPolicy: true)
        }
        if let slots = policySlots {
            for (index, slot) in slots.enumerated() {
                if slot.isReserved { return Outcome(verdict: .deny, tier: .networkPolicy, slot: index, clusterPolicy: false) }
                if slot.matchesNetworkPolicy(protocolNumber: protocolNumber, port: port) {
                    return Outcome(verdict: .allow, tier: .networkPolicy, slot: index, clusterPolicy: false)
                }
            }
            return Outcome(verdict: .deny, tier: .networkPolicy, slot: nil, clusterPolicy: false)
        }
        if networkPolicyState == .policiesApplied { return Outcome(verdict: .deny, tier: .networkPolicy, slot: nil, clusterPolicy: false) }
        if let baseline, baseline.action != UInt32(RuleAction.pass.rawValue) {
            return Outcome(verdict: baseline.action == UInt32(RuleAction.accept.rawValue) ? .allow : .deny, tier: .baseline, slot: baseline.slot,
                           clusterPolicy: true)
        }
        return Outcome(verdict: networkPolicyState == .defaultDeny ? .deny : .allow, tier: .podDefault, slot: nil, clusterPolicy: false)
    }
}

extension AWSPolicySlot {
    /// A network-policy slot's match as the agent tests it: the protocol (or ANY), then the
    /// port: any (start 0), the start itself, or above it up to the end.
    public func matchesNetworkPolicy(protocolNumber: UInt8, port: UInt16) -> Bool {
        (matchesAnyProtocol || self.protocolNumber == UInt32(protocolNumber))
            && (startPort == 0 || UInt32(port) == startPort || (UInt32(port) > startPort && UInt32(port) <= endPort))
    }

    /// A cluster-policy slot's match: ANY ignores ports; else the protocol, then the port
    /// (any, the start, or within a range whose end is set).
    public func matchesClusterPolicy(protocolNumber: UInt8, port: UInt16) -> Bool {
        matchesAnyProtocol || (self.protocolNumber == UInt32(protocolNumber)
            && (startPort == 0 || UInt32(port) == startPort || (endPort > 0 && UInt32(port) >= startPort && UInt32(port) <= endPort)))
    }
}
