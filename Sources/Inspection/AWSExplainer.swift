import BPFKit
import DatapathModel

/// `policy explain --aws`: how the AWS agent's programs decide a new flow of one
/// pod, from its pinned maps (the peer's entries of the pod's cluster-policy and
/// network-policy tries, the pod's states), by the agent's own procedure
/// (`AWSPolicyEvaluator`). Read-only. Field names are the `-o json` interface.
public struct AWSPolicyExplanation: Encodable, Sendable {
    public struct Slot: Encodable, Sendable {
        public let slot: Int
        public let proto: String
        public let ports: String
        /// Cluster policy: the tier by priority, the priority within it, the action.
        public let tier: String?
        public let priority: UInt32?
        public let action: String
        public let matches: Bool
    }

    public let podIdentifier: String
    public let direction: String
    public let networkPolicyState: String
    public let clusterPolicyState: String
    public let peer: String
    public let proto: String
    public let port: UInt16
    /// The peer's entry of the pod's cluster-policy trie, and its used slots.
    public let clusterPolicyPrefix: String?
    public let clusterPolicySlots: [Slot]
    public let networkPolicyPrefix: String?
    public let networkPolicySlots: [Slot]
    public let verdict: String
    /// As the agent's event reports it: admin, network-policy, baseline, default.
    public let tier: String
    /// The slot that decided, and in which map.
    public let slot: Int?
    public let map: String?
    public let why: String

    /// Explains `direction` of the pod the agent pins as `podIdentifier` under `awsRoot`.
    public static func explain(podIdentifier: String, direction: Direction, peer: IPAddress, protocolNumber: UInt8, port: UInt16,
                               awsRoot: String = AWSAgent.root) throws -> AWSPolicyExplanation {
        let maps = "\(awsRoot)/maps/\(podIdentifier)_"
        let trieName = direction == .ingress ? AWSAgent.Object.ingressMap : .egressMap
        let clusterName = direction == .ingress ? AWSAgent.Object.clusterIngressMap : .clusterEgressMap
        let stateName = direction == .ingress ? AWSAgent.Object.ingressPodStateMap : .egressPodStateMap
        guard let states = try BPFFilesystem.pinnedMap(at: maps + stateName.rawValue) else {
            throw LayoutMismatch(description: "no \(stateName.rawValue) of pod \(podIdentifier) is pinned under \(awsRoot)/maps: "
                                 + "the AWS agent does not enforce policy for that pod here (list them with 'netfence ebpf loaded-ebpfdata')")
        }
        func state(_ kind: AWSPolicyKind) throws -> AWSPodState? {
            try states.lookup(key: withUnsafeBytes(of: kind.rawValue) { Array($0) }).flatMap { $0.count == 1 ? AWSPodState(rawValue: $0[0]) : nil }
        }
        guard let networkPolicyState = try state(.networkPolicy), let clusterPolicyState = try state(.clusterPolicy) else {
            throw LayoutMismatch(description: "the pod state map of \(podIdentifier) has no state for both kinds: the agent's programs deny every "
                                 + "packet of the pod (error tier)")
        }
        let cluster = try entry(maps + clusterName.rawValue, peer: peer, clusterPolicy: true)
        let policy = try entry(maps + trieName.rawValue, peer: peer, clusterPolicy: false)
        let outcome = AWSPolicyEvaluator.decide(clusterSlots: cluster?.slots, policySlots: policy?.slots, networkPolicyState: networkPolicyState,
                                                protocolNumber: protocolNumber, port: port)
        func words(_ slots: [AWSPolicySlot]?, clusterPolicy: Bool) -> [Slot] {
            (slots ?? []).enumerated().filter { $0.element.isUsed }.map { index, slot in
                let proto = slot.matchesAnyProtocol ? "any" : slot.isReserved ? "reserved" : ProtocolName.of(UInt8(truncatingIfNeeded: slot.protocolNumber))
                return Slot(slot: index, proto: proto, ports: slot.portsText, tier: clusterPolicy ? slot.tier.description : nil, priority: slot.priority,
                            action: clusterPolicy ? slot.action?.description ?? "unknown" : slot.isReserved ? "deny" : "accept",
                            matches: clusterPolicy ? slot.matchesClusterPolicy(protocolNumber: protocolNumber, port: port)
                                : slot.isReserved || slot.matchesNetworkPolicy(protocolNumber: protocolNumber, port: port))
            }
        }
        let flow = "\(peer)" + (IPProtocolNumber.carriesEchoIdentifier(protocolNumber) ? "" : ":\(port)") + "/\(ProtocolName.of(protocolNumber))"
        let why: String = switch (outcome.tier, outcome.slot) {
        case (.admin, let slot?): "cluster-policy slot \(slot) (Admin) \(outcome.verdict == .allow ? "accepts" : "denies") \(flow) before the network policy"
        case (.networkPolicy, let slot?) where outcome.verdict == .deny: "network-policy slot \(slot) is RESERVED (an except block): it denies"
        case (.networkPolicy, let slot?): "network-policy slot \(slot) matches \(flow)"
        case (.networkPolicy, nil) where policy != nil: "the peer's network-policy entry has no slot matching \(flow): the agent denies"
        case (.networkPolicy, nil): "the pod's network policy is applied and no entry holds \(peer): the agent denies"
        case (.baseline, let slot?): "no Admin slot and no network-policy entry decided: Baseline slot \(slot) \(outcome.verdict == .allow ? "accepts" : "denies") it"
        default: "nothing decided before: the pod's network-policy state, \(networkPolicyState)"
        }
        return AWSPolicyExplanation(
            podIdentifier: podIdentifier, direction: direction.description, networkPolicyState: networkPolicyState.description,
            clusterPolicyState: clusterPolicyState.description, peer: peer.description, proto: ProtocolName.of(protocolNumber), port: port,
            clusterPolicyPrefix: cluster?.prefix.description, clusterPolicySlots: words(cluster?.slots, clusterPolicy: true),
            networkPolicyPrefix: policy?.prefix.description, networkPolicySlots: words(policy?.slots, clusterPolicy: false),
            verdict: outcome.verdict.description, tier: outcome.tier.description, slot: outcome.slot,
            map: outcome.slot == nil ? nil : (outcome.clusterPolicy ? clusterName : trieName).rawValue, why: why)
    }

    /// The entry of one of the agent's tries that holds `peer` (the prefix found by asking with shorter
    /// lengths, as for netfence's tries), with its 24 slots; nil without the pin or an entry.
    static func entry(_ path: String, peer: IPAddress, clusterPolicy: Bool) throws -> (prefix: IPPrefix, slots: [AWSPolicySlot])? {
        let v4 = peer.family == .ipv4
        // A node runs the agent in one family: a trie of the other holds no entry for the peer.
        guard let trie = try BPFFilesystem.pinnedMap(at: path),
              Int(try trie.info().keySize) == (v4 ? AWSAgent.ipv4TrieKeyBytes : AWSAgent.ipv6TrieKeyBytes) else { return nil }
        func lookup(_ length: Int) throws -> [UInt8]? {
            let masked = IPPrefix(address: peer, length: v4 ? 96 + length : length, family: peer.family).address
            return try trie.lookup(key: withUnsafeBytes(of: UInt32(length)) { Array($0) } + (v4 ? Array(masked.bytes.suffix(4)) : masked.bytes))
        }
        let full = v4 ? 32 : 128
        guard let value = try lookup(full), let slots = value.withUnsafeBytes({ AWSPolicySlot.decode($0, clusterPolicy: clusterPolicy) }) else {
            return nil
        }
        var (low, high) = (0, full)
        while low < high {
            let middle = (low + high) / 2
            if try lookup(middle) == value { high = middle } else { low = middle + 1 }
        }
        return (IPPrefix(address: peer, length: v4 ? 96 + low : low, family: peer.family), slots)
    }
}
