/// The Amazon VPC CNI network-policy agent's datapath as netfence reads it on an
/// EKS node (shared guide FACTS.md; the agent's `pkg/ebpf/c/*.bpf.c`): where it
/// pins, what its maps hold, and one name for each of its values. On a real node
/// its SDK creates maps and programs without kernel names: the pin is the identity.
public enum AWSAgent {
    /// Where the agent pins everything.
    public static let root = "/sys/fs/bpf/globals/aws"
    public static let mapsFolder = "\(root)/maps"
    public static let programsFolder = "\(root)/programs"

    /// Port-rule slots in one trie value; the datapath scans all of them (a used slot may follow an empty one).
    public static let slots = 24
    public static let anyProtocol: UInt32 = 254
    /// A slot with this protocol denies (the agent writes except blocks so).
    public static let reservedProtocol: UInt32 = 255
    /// Cluster-policy priorities at or below this are the Admin tier; Baseline's are offset by 2000.
    public static let adminPriorityLimit: UInt32 = 1000
    public static let baselinePriorityOffset: UInt32 = 2000

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
    public static let policyValueBytes = slots * 12
    public static let clusterPolicyValueBytes = slots * 16
    /// Key sizes: `{u32 prefixlen; u8 ip[4|16]}`.
    public static let ipv4TrieKeyBytes = 8, ipv6TrieKeyBytes = 20
    /// Conntrack key sizes (v4, v6) and its value `{u64 val; u64 last_seen_ns}`.
    public static let ipv4ConntrackKeyBytes = 24, ipv6ConntrackKeyBytes = 60, conntrackValueBytes = 16
    /// Event record sizes (`struct data_t`, v4 and v6).
    public static let ipv4EventBytes = 32, ipv6EventBytes = 56
}

/// `*_pod_state_map` values: what the agent's pod does in a direction (its numbering).
public enum AWSPodState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case policiesApplied = 0, defaultAllow = 1, defaultDeny = 2

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
    public var action: RuleAction? { encodedPriority.flatMap { RuleAction(rawValue: UInt8(truncatingIfNeeded: $0 % 10)) } }
    /// The tier of a cluster-policy slot by its priority: Admin up to 1000, Baseline from 2000.
    public var tier: Tier {
        guard let encoded = encodedPriority else { return .networkPolicy }
        let priority = encoded / 10
        return priority >= AWSAgent.baselinePriorityOffset ? .baseline : priority <= AWSAgent.adminPriorityLimit ? .admin : .none
    }
    /// The rule's priority within its tier (Baseline's offset taken off).
    public var priority: UInt32? {
        encodedPriority.map { $0 / 10 >= AWSAgent.baselinePriorityOffset ? $0 / 10 - AWSAgent.baselinePriorityOffset : $0 / 10 }
    }

    /// `any`, `80`, `8000-8100`.
    public var portsText: String {
        startPort == 0 ? "any" : endPort == 0 || endPort == startPort ? "\(startPort)" : "\(startPort)-\(endPort)"
    }

    /// The slots of a trie value (every one of the 24, used or not); nil for a value of another size.
    public static func decode(_ value: UnsafeRawBufferPointer, clusterPolicy: Bool) -> [AWSPolicySlot]? {
        let stride = clusterPolicy ? 16 : 12
        guard value.count == AWSAgent.slots * stride else { return nil }
        return (0..<AWSAgent.slots).map { slot in
            func field(_ index: Int) -> UInt32 { value.loadUnaligned(fromByteOffset: slot * stride + index * 4, as: UInt32.self) }
            return clusterPolicy
                ? AWSPolicySlot(protocolNumber: field(0), startPort: field(2), endPort: field(3), encodedPriority: field(1))
                : AWSPolicySlot(protocolNumber: field(0), startPort: field(1), endPort: field(2), encodedPriority: nil)
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

    /// A record by its size: 32 bytes IPv4, 56 IPv6; nil for any other.
    public static func decode(_ record: UnsafeRawBufferPointer) -> AWSPolicyEvent? {
        func u32(_ offset: Int) -> UInt32 { record.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        let v4 = record.count == AWSAgent.ipv4EventBytes
        guard v4 || record.count == AWSAgent.ipv6EventBytes else { return nil }
        let address = { (offset: Int) in v4 ? IPAddress(ipv4: Array(record[offset..<offset + 4])) : IPAddress(record, at: offset) }
        let (source, sport, destination, dport, proto, verdict, size, egress, tier) =
            v4 ? (0, 4, 8, 12, 16, 20, 24, 28, 29) : (0, 16, 20, 36, 40, 44, 48, 52, 53)
        return AWSPolicyEvent(family: v4 ? .ipv4 : .ipv6, source: address(source), sourcePort: u32(sport), destination: address(destination),
                              destinationPort: u32(dport), protocolNumber: u32(proto), verdict: u32(verdict) == 1 ? .allow : .deny,
                              packetBytes: u32(size), isEgress: record[egress] != 0, tier: Tier(rawValue: record[tier]))
    }

    /// The pod's end of the flow: the source of what it sends, the destination of what it receives.
    public var podAddress: IPAddress { isEgress ? source : destination }
}
