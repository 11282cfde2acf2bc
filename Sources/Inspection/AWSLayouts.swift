import BPFKit
import DatapathModel

/// The Amazon VPC CNI network-policy agent's maps (pins under
/// `/sys/fs/bpf/globals/aws/`), decoded from their published layouts (`AWSAgent`).

/// `<podId>_ingress_map` / `_egress_map` (v4 key 8 B, v6 20 B; value 24 × {protocol, start, end})
/// and `cp_ingress_map` / `cp_egress_map` (24 × {protocol, priority, start, end}). Every used slot
/// is shown: the agent's datapath scans all 24, and a used one can follow an empty one.
struct AWSPolicyLayout: MapLayout {
    let context: DecodeContext
    let clusterPolicy: Bool
    var title: String { clusterPolicy ? "AWS agent cluster-policy trie" : "AWS agent policy trie" }
    var columns: [Column] {
        [Column("cidr", "CIDR", width: 43), Column("slot", "SLOT", width: 4), Column("proto", "PROTO", width: 8), Column("ports", "PORTS", width: 11),
         Column("action", "ACTION", width: 6), Column("tier", "TIER", width: 14), Column("priority", "PRIO", width: 5)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let prefixLength = Int(key.loadUnaligned(as: UInt32.self))
        let prefix: IPPrefix
        if key.count == AWSAgent.ipv4TrieKeyBytes {
            prefix = IPPrefix(address: IPAddress(ipv4: Array(key[4..<8])), length: 96 + min(prefixLength, 32), family: .ipv4)
        } else {
            prefix = IPPrefix(address: IPAddress(key, at: 4), length: min(prefixLength, 128), family: .ipv6)
        }
        guard let slots = AWSPolicySlot.decode(value, clusterPolicy: clusterPolicy) else { return }
        for (index, slot) in slots.enumerated() where slot.isUsed {
            let protocolValue: FieldValue = slot.matchesAnyProtocol ? .word("any") : slot.isReserved ? .word("reserved")
                : context.protocolName(UInt8(truncatingIfNeeded: slot.protocolNumber))
            if clusterPolicy {
                let action: FieldValue = slot.action.map { .word($0.name) } ?? .text("action \((slot.encodedPriority ?? 0) % 10)")
                rows.write(.prefix(prefix), .number(UInt64(index)), protocolValue, .text(slot.portsText), action,
                           slot.tier == .none ? .word("unknown") : .word(slot.tier.name), .number(UInt64(slot.priority ?? 0)))
            } else {
                rows.write(.prefix(prefix), .number(UInt64(index)), protocolValue, .text(slot.portsText),
                           .word(slot.isReserved ? RuleAction.deny.name : RuleAction.accept.name), .word(Tier.networkPolicy.name), .none)
            }
        }
    }
}

/// `<podId>_ingress_pod_state_map` / `_egress_pod_state_map`: u32 (0 network policy, 1 cluster policy) → u8 state.
struct AWSPodStateLayout: MapLayout {
    var title: String { "AWS agent pod state" }
    var columns: [Column] { [Column("policy", "POLICY KIND", width: 14), Column("state", "STATE", width: 16)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let kind = key.loadUnaligned(as: UInt32.self), state = value[0]
        rows.write(.text(kind == 0 ? "network-policy" : kind == 1 ? "cluster-policy" : "kind \(kind)"),
                   AWSPodState(rawValue: state).map { .word($0.podState.name) } ?? .text("state \(state)"))
    }
}

/// `global_aws_conntrack_map`: v4 key 24 B, v6 60 B; value {u64 state code; u64 last_seen_ns}.
/// The pod is the one whose program is attached on the entry's ifindex (from the pins).
struct AWSConntrackLayout: MapLayout {
    let context: DecodeContext
    var title: String { "AWS agent conntrack" }
    var columns: [Column] {
        [context.podColumn] + Column.flow + [Column("owner", "OWNER", width: 39), Column("ifindex", "IFINDEX", width: 7),
                                            Column("npState", "NP STATE", width: 16), Column("cpState", "CP STATE", width: 16),
                                            Column("stateCode", "CODE", width: 4), Column("ageSeconds", "AGE", width: 10)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let entry = AWSConntrackEntry.decode(key: key, value: value) else { return }
        let states = entry.state.states
        rows.write(context.awsPod(ifindex: entry.ifindex), context.protocolName(entry.protocolNumber),
                   .address(entry.source), .number(UInt64(entry.sourcePort)), .address(entry.destination), .number(UInt64(entry.destinationPort)),
                   .address(entry.owner), .number(UInt64(entry.ifindex)),
                   states.map { .word($0.networkPolicy.podState.name) } ?? .none, states.map { .word($0.clusterPolicy.podState.name) } ?? .none,
                   .number(entry.state.code), context.age(entry.lastSeenNanoseconds))
    }
}

/// One entry of the agent's conntrack, either family.
struct AWSConntrackEntry {
    let family: AddressFamily
    let source: IPAddress, sourcePort: UInt16
    let destination: IPAddress, destinationPort: UInt16
    let protocolNumber: UInt8
    let owner: IPAddress
    let ifindex: UInt32
    let state: AWSConntrackState
    let lastSeenNanoseconds: UInt64

    static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> AWSConntrackEntry? {
        let v4 = key.count == AWSAgent.ipv4ConntrackKeyBytes
        guard v4 || key.count == AWSAgent.ipv6ConntrackKeyBytes, value.count == AWSAgent.conntrackValueBytes else { return nil }
        let address = { (offset: Int) in v4 ? IPAddress(ipv4: Array(key[offset..<(offset + 4)])) : IPAddress(key, at: offset) }
        let (source, sport, destination, dport, proto, owner, ifindex) = v4 ? (0, 4, 8, 12, 14, 16, 20) : (0, 16, 20, 36, 38, 40, 56)
        return AWSConntrackEntry(family: v4 ? .ipv4 : .ipv6, source: address(source), sourcePort: key.loadUnaligned(fromByteOffset: sport, as: UInt16.self),
                                 destination: address(destination), destinationPort: key.loadUnaligned(fromByteOffset: dport, as: UInt16.self),
                                 protocolNumber: key[proto], owner: address(owner), ifindex: key.loadUnaligned(fromByteOffset: ifindex, as: UInt32.self),
                                 state: AWSConntrackState(code: value.loadUnaligned(as: UInt64.self)),
                                 lastSeenNanoseconds: value.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }
}

/// The AWS agent's pods as its attached programs show them.
public enum AWSPods {
    /// Pod identifier by the host interface its programs are attached on: tc filters of
    /// programs pinned under `awsRoot`/programs (`<podId>_handle_ingress`/`_egress`).
    public static func byInterface(awsRoot: String = AWSAgent.root) throws -> [UInt32: String] {
        let programs = try PinIndex(roots: ["\(awsRoot)/programs"]).programs
        var pods: [UInt32: String] = [:]
        for attachment in TCAttachments.scan() {
            guard let pod = programs[attachment.programID]?.lazy.compactMap(AWSAgent.Pin.init(path:)).first?.podIdentifier else { continue }
            pods[attachment.ifindex] = pod
        }
        return pods
    }
}
