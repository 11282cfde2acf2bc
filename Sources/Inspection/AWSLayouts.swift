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
        guard let prefix = AWSTrieKey.prefix(key), let slots = AWSPolicySlot.decode(value, clusterPolicy: clusterPolicy) else { return }
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
        guard key.count == 4, value.count == 1 else { return }
        let kind = key.loadUnaligned(as: UInt32.self), state = value[0]
        rows.write(AWSPolicyKind(rawValue: kind).map { .word($0.name) } ?? .text("kind \(kind)"),
                   AWSPodState(rawValue: state).map { .word($0.podState.name) } ?? .text("state \(state)"))
    }
}

/// `global_aws_conntrack_map`: v4 key 24 B, v6 60 B; value {u64 state code; u64 last_seen_ns}.
/// The pod is the one whose program is attached on the entry's ifindex (from the pins).
public final class AWSConntrackLayout: MapLayout {
    let context: DecodeContext
    public var title: String { "AWS agent conntrack" }
    public var columns: [Column] {
        [context.podColumn] + Column.flow + [Column("owner", "OWNER", width: 39), Column("ifindex", "IFINDEX", width: 7),
                                            Column("npState", "NP STATE", width: 16), Column("cpState", "CP STATE", width: 16),
                                            Column("stateCode", "CODE", width: 4), Column("ageSeconds", "AGE", width: 10)]
    }
    /// At most how many bytes a row's values take: its pod (escaped, quoted), then 12 fields of at most 64 B.
    private let valueBytes: Int

    init(context: DecodeContext) {
        self.context = context
        valueBytes = 2 + 6 * max(context.awsPods.values.map(\.utf8.count).max() ?? 0, 20) + 12 * 64
    }

    /// As netfence's conntrack: the pod behind an interface and what a state code reads as are
    /// written once per dump and copied into the rows that repeat them.
    public func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let entry = AWSConntrackEntry.decode(key: key, value: value) else { return }
        rows.writeRow(valueBytes: valueBytes) { row in
            row.putRepeated(.init(UInt64(entry.ifindex), UInt64(entry.protocolNumber))) { row in
                row.put(context.awsPod(ifindex: entry.ifindex))
                row.put(context.protocolName(entry.protocolNumber))
            }
            row.put(.address(entry.source))
            row.put(.number(UInt64(entry.sourcePort)))
            row.put(.address(entry.destination))
            row.put(.number(UInt64(entry.destinationPort)))
            row.put(.address(entry.owner))
            row.put(.number(UInt64(entry.ifindex)))
            row.putRepeated(.init(entry.state.code)) { row in
                let states = entry.state.states
                row.put(states.map { .word($0.networkPolicy.podState.name) } ?? .none)
                row.put(states.map { .word($0.clusterPolicy.podState.name) } ?? .none)
                row.put(.number(entry.state.code))
            }
            row.put(context.age(entry.lastSeenNanoseconds))
        }
    }
}

/// One entry of the agent's conntrack, either family.

/// The AWS agent's pods as its attached programs show them.
public enum AWSPods {
    /// Pod identifier by the host interface its programs are attached on: tc filters of
    /// programs pinned under `awsRoot`/programs (`<podId>_handle_ingress`/`_egress`).
    public static func byInterface(awsRoot: String = AWSAgent.root) throws -> [UInt32: String] {
        try interfaces(awsRoot: awsRoot).mapValues(\.podIdentifier)
    }

    /// The pod and the interface's name by ifindex, both from the attachment of one of the
    /// agent's programs: an index names an interface only within its namespace, and other
    /// namespaces (other nodes' sandboxes, containers) reuse the same numbers.
    public static func interfaces(awsRoot: String = AWSAgent.root) throws -> [UInt32: (podIdentifier: String, interface: String)] {
        let programs = try PinIndex(roots: ["\(awsRoot)/programs"]).programs
        var pods: [UInt32: (podIdentifier: String, interface: String)] = [:]
        for attachment in TCAttachments.scan() {
            guard let pod = programs[attachment.programID]?.lazy.compactMap(AWSAgent.Pin.init(path:)).first?.podIdentifier else { continue }
            pods[attachment.ifindex] = (pod, attachment.interface)
        }
        return pods
    }
}

/// The AWS agent's conntrack (`global_aws_conntrack_map`, either family): listed,
/// flushed and counted like netfence's, each flow attributed to its pod.
public struct AWSConntrackTable {
    /// Which flows: combined with AND.
    public struct Filter {
        /// Only flows seen on these host interfaces (a pod's).
        public var ifindexes: Set<UInt32>?
        public var prefix: IPPrefix?
        public var port: UInt16?
        public var protocolNumber: UInt8?

        public init() {}

        public var isEmpty: Bool { ifindexes == nil && prefix == nil && port == nil && protocolNumber == nil }

        func matches(_ entry: AWSConntrackEntry) -> Bool {
            if let ifindexes, !ifindexes.contains(entry.ifindex) { return false }
            if let prefix, !prefix.contains(entry.source, family: entry.family), !prefix.contains(entry.destination, family: entry.family) { return false }
            if let port, entry.sourcePort != port, entry.destinationPort != port { return false }
            if let protocolNumber, entry.protocolNumber != protocolNumber { return false }
            return true
        }
    }

    public let map: BPFMap
    public let layout: AWSConntrackLayout
    public let pods: [UInt32: String]

    /// The table pinned under `awsRoot` (`maps/global_aws_conntrack_map`), its pods from the programs' pins.
    public init(awsRoot: String = AWSAgent.root, context: DecodeContext) throws {
        let path = "\(awsRoot)/maps/global_\(AWSAgent.Object.conntrackMap.rawValue)"
        guard let map = try BPFFilesystem.pinnedMap(at: path) else {
            throw LayoutMismatch(description: "nothing is pinned at \(path): the AWS network-policy agent does not run here (or pins elsewhere: --aws-root)")
        }
        let info = try map.info()
        guard info.type == .lruHash, [AWSAgent.ipv4ConntrackKeyBytes, AWSAgent.ipv6ConntrackKeyBytes].contains(Int(info.keySize)),
              Int(info.valueSize) == AWSAgent.conntrackValueBytes else {
            throw LayoutMismatch(description: "\(path) is a \(info.type) map, key \(info.keySize) B, value \(info.valueSize) B: not the agent's conntrack "
                                 + "(an lru_hash map, key 24 or 60 B, value 16 B)")
        }
        var context = context
        pods = try AWSPods.byInterface(awsRoot: awsRoot)
        context.awsPods = pods
        self.map = map
        layout = AWSConntrackLayout(context: context)
    }

    /// The host interfaces of the pod with `podIdentifier`.
    public func interfaces(of podIdentifier: String) -> Set<UInt32> {
        Set(pods.filter { $0.value == podIdentifier }.keys)
    }

    /// Visits every entry `filter` selects, batch by batch.
    public func forEach(_ filter: Filter, _ body: (AWSConntrackEntry, UnsafeRawBufferPointer) throws -> Void) throws {
        try map.forEachBatchReadingAhead { batch in
            for index in 0..<batch.count {
                guard let entry = AWSConntrackEntry.decode(key: batch.key(index), value: batch.value(index)), filter.matches(entry) else { continue }
                try body(entry, batch.key(index))
            }
        }
    }

    /// Streams the selected entries into `writer`; returns how many.
    @discardableResult
    public func list(_ filter: Filter, into writer: RecordWriter) throws -> Int {
        try map.forEachBatchReadingAhead { batch in
            for index in 0..<batch.count {
                guard let entry = AWSConntrackEntry.decode(key: batch.key(index), value: batch.value(index)), filter.matches(entry) else { continue }
                layout.decode(key: batch.key(index), value: batch.value(index), into: writer)
            }
        }
        writer.finish()
        return writer.rowCount
    }

    /// Removes the selected entries from the agent's table; returns how many. The agent
    /// decides a removed flow's next packet again as a new flow.
    public func flush(_ filter: Filter) throws -> Int {
        var keys: [[UInt8]] = []
        try forEach(filter) { _, key in keys.append(Array(key)) }
        return try keys.reduce(0) { $0 + (try map.delete(key: $1) ? 1 : 0) }
    }

    /// Entries, capacity, fill; by state pair, pod and protocol.
    public func statistics() throws -> ConntrackTable.Statistics {
        var statistics = ConntrackTable.Statistics()
        statistics.maximum = Int(try map.info().maxEntries)
        try forEach(Filter()) { entry, _ in
            statistics.entries += 1
            statistics.byState[entry.state.description, default: 0] += 1
            statistics.byPod[pods[entry.ifindex] ?? "ifindex \(entry.ifindex)", default: 0] += 1
            statistics.byProtocol[ProtocolName.of(entry.protocolNumber), default: 0] += 1
        }
        statistics.fillPercent = statistics.maximum == 0 ? 0 : (Double(statistics.entries) * 1000 / Double(statistics.maximum)).rounded() / 10
        return statistics
    }
}
