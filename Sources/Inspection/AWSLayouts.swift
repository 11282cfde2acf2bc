import DatapathModel

/// The Amazon VPC CNI network-policy agent's maps (pins under
/// `/sys/fs/bpf/globals/aws/`), decoded from their published layouts.

/// `<podId>_ingress_map` / `_egress_map` (v4 key 8 B, v6 20 B; value 24 × {protocol, start, end})
/// and `cp_ingress_map` / `cp_egress_map` (24 × {protocol, priority, start, end}).
struct AWSPolicyLayout: MapLayout {
    let context: DecodeContext
    let clusterPolicy: Bool
    static let slots = 24
    var title: String { clusterPolicy ? "AWS agent cluster-policy trie" : "AWS agent policy trie" }
    var columns: [Column] {
        [Column("cidr", "CIDR", width: 43), Column("proto", "PROTO", width: 8), Column("ports", "PORTS", width: 11),
         Column("action", "ACTION", width: 6), Column("tier", "TIER", width: 14), Column("priority", "PRIO", width: 5)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let prefixLength = Int(key.loadUnaligned(as: UInt32.self))
        let prefix: IPPrefix
        if key.count == 8 {
            prefix = IPPrefix(address: IPAddress(ipv4: Array(key[4..<8])), length: 96 + min(prefixLength, 32))
        } else {
            prefix = IPPrefix(address: IPAddress(key, at: 4), length: min(prefixLength, 128), family: .ipv6)
        }
        let stride = clusterPolicy ? 16 : 12
        for slot in 0..<Self.slots {
            func field(_ index: Int) -> UInt32 { value.loadUnaligned(fromByteOffset: slot * stride + index * 4, as: UInt32.self) }
            let proto = field(0)
            let (start, end) = clusterPolicy ? (field(2), field(3)) : (field(1), field(2))
            guard proto != 0 || start != 0 || end != 0 else { break }  // the agent fills slots in order
            let protocolValue: FieldValue = proto == 254 ? .text("any") : proto == 255 ? .text("reserved") : context.protocolName(UInt8(truncatingIfNeeded: proto))
            let ports = FieldValue.text(start == 0 ? "any" : end == 0 || end == start ? "\(start)" : "\(start)-\(end)")
            if clusterPolicy {
                let encoded = field(1), priority = encoded / 10
                let action = ["deny", "accept", "pass"][Int(min(encoded % 10, 2))]
                let tier = priority >= 2000 ? "baseline" : priority <= 1000 ? "admin" : "unknown"
                rows.write(.prefix(prefix), protocolValue, ports, .text(encoded % 10 > 2 ? "action \(encoded % 10)" : action), .text(tier),
                           .number(UInt64(priority >= 2000 ? priority - 2000 : priority)))
            } else {
                rows.write(.prefix(prefix), protocolValue, ports, .text(proto == 255 ? "deny" : "accept"), .text("network-policy"), .none)
            }
        }
    }
}

/// `<podId>_pod_state_map`: u32 (0 network policy, 1 cluster policy) → u8 state.
struct AWSPodStateLayout: MapLayout {
    var title: String { "AWS agent pod state" }
    var columns: [Column] { [Column("policy", "POLICY KIND", width: 14), Column("state", "STATE", width: 16)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let kind = key.loadUnaligned(as: UInt32.self), state = value[0]
        let states = ["policies-applied", "default-allow", "default-deny"]
        rows.write(.text(kind == 0 ? "network-policy" : kind == 1 ? "cluster-policy" : "kind \(kind)"),
                   .text(Int(state) < states.count ? states[Int(state)] : "state \(state)"))
    }
}

/// `global_aws_conntrack_map`: v4 key 24 B, v6 60 B; value {u64 state; u64 last_seen_ns}.
struct AWSConntrackLayout: MapLayout {
    let context: DecodeContext
    var title: String { "AWS agent conntrack" }
    var columns: [Column] {
        Column.flow + [Column("owner", "OWNER", width: 39), Column("ifindex", "IFINDEX", width: 7), Column("state", "STATE", width: 12),
                       Column("ageSeconds", "AGE", width: 10)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let v4 = key.count == 24
        let address = { (offset: Int) in v4 ? IPAddress(ipv4: Array(key[offset..<(offset + 4)])) : IPAddress(key, at: offset) }
        let (source, sport, destination, dport, proto, owner, ifindex) = v4 ? (0, 4, 8, 12, 14, 16, 20) : (0, 16, 20, 36, 38, 40, 56)
        let state = value.loadUnaligned(as: UInt64.self)
        rows.write(context.protocolName(key[proto]), .address(address(source)), .number(UInt64(key.loadUnaligned(fromByteOffset: sport, as: UInt16.self))),
                   .address(address(destination)), .number(UInt64(key.loadUnaligned(fromByteOffset: dport, as: UInt16.self))),
                   .address(address(owner)), .number(UInt64(key.loadUnaligned(fromByteOffset: ifindex, as: UInt32.self))),
                   .numbers([state & 0xffff_ffff, state >> 32]), context.age(value.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}
