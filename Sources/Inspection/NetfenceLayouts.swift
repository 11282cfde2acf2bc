import BPFKit
import DatapathModel
import Loader
import Glibc
import HostKit

/// How one kind of map's entries read in words: its columns, and the rows an entry makes.
public protocol MapLayout {
    /// What the map is, for messages and the dump's title (`netfence conntrack`).
    var title: String { get }
    var columns: [Column] { get }
    /// The rows of one entry (none for an empty array slot, several for a prefix's rules).
    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter)
}

/// What turns ids into names, and how the caller wants them.
public struct DecodeContext {
    public var attribution: Attribution?
    /// Current policy revision by pod id, for conntrack state; live policy slot by pod id (both from `pods`).
    public var revisions: [UInt32: UInt32] = [:]
    /// The pods whose records name each trie of `policies`, with the direction, by index.
    public var trieReaders: [TrieIndex: (direction: Direction, podIDs: [UInt32])] = [:]
    /// Reads the roles of the tries that hold no policy (spares) in the `policies` map with the given
    /// id, when it is the loader's (only a dump of `policies` asks).
    public var readTrieRoles: (UInt32) throws -> [TrieIndex: TrieRole] = { _ in [:] }
    /// Numbers instead of names (`--numeric`).
    public var numeric = false
    /// Per-CPU values one by one beside their sum (`--per-cpu`).
    public var perCPU = false
    /// CLOCK_MONOTONIC now, in ns: ages are measured against it.
    public var monotonicNow: UInt64
    /// The AWS agent's pods by the host interface their programs are attached on (pod identifiers, from the pins).
    public var awsPods: [UInt32: String] = [:]
    /// New flows each rule decided, by rule id, when one pod's trie is dumped (`--pod`): its HITS columns.
    public var hits: [UInt32: RuleHit]?

    public init(attribution: Attribution? = nil) {
        self.attribution = attribution
        monotonicNow = HostClock.monotonic.nanoseconds
    }

    /// Names and pod states from netfence's loader, when it is loaded here.
    public init(loader: Loader?) throws {
        guard let loader else {
            self.init()
            return
        }
        self.init(attribution: try loader.attribution())
        readTrieRoles = { try loader.datapath.trieRoles(ofPoliciesMap: $0) }
        for (podID, record) in try loader.liveRecords().sorted(by: { $0.key < $1.key }) {
            revisions[podID] = record.revision
            for (direction, index) in record.tries { trieReaders[index, default: (direction, [])].podIDs.append(podID) }
        }
    }

    func protocolName(_ number: UInt8) -> FieldValue {
        guard !numeric else { return .number(UInt64(number)) }
        return ProtocolName.known(number).map { .word($0) } ?? .text(ProtocolName.of(number))
    }

    public func pod(_ podID: UInt32) -> FieldValue {
        guard !numeric, let label = attribution?.pod(podID) else { return .text("pod-id \(podID)") }
        return .text(label.pod)
    }

    func interface(_ podID: UInt32) -> FieldValue {
        attribution?.pod(podID).map { .text($0.interface) } ?? .none
    }

    func policy(_ ruleID: UInt32) -> (FieldValue, FieldValue) {
        guard let (policy, rule) = attribution?.policy(ruleID: ruleID) else {
            return (ruleID == 0 ? .none : .text("rule-id \(ruleID)"), .none)
        }
        return (.text(policy), .number(UInt64(rule)))
    }

    /// The pod column, wide enough for every attached pod's `namespace/name`
    /// (real pod names are long; a fixed width would misalign the streamed rows).
    var podColumn: Column {
        Column("pod", "POD", width: min(max(24, attribution?.longestPodName ?? 0, awsPods.values.map(\.count).max() ?? 0), 320))
    }

    /// The AWS agent's pod behind host interface `ifindex`, or `ifindex N` when no program of its is attached there.
    func awsPod(ifindex: UInt32) -> FieldValue {
        awsPods[ifindex].map { .text($0) } ?? .text("ifindex \(ifindex)")
    }
    /// The policy column, wide enough for every policy name and a `(replaced)` mark.
    var policyColumn: Column { Column("policy", "POLICY", width: min(max(24, attribution?.longestPolicyName ?? 0), 330)) }

    func age(_ lastSeen: UInt64) -> FieldValue {
        .age(Double(monotonicNow > lastSeen ? monotonicNow - lastSeen : 0) / 1e9)
    }

    /// A per-CPU value's sum, and each CPU's share when asked for (`--per-cpu`).
    func perCPU(_ values: [UInt64]) -> (sum: UInt64, slots: FieldValue) {
        (values.reduce(0, &+), perCPU ? .numbers(values) : .none)
    }
}

/// Words for the datapath's enums.
enum Names {
    static func ports(start: UInt16, end: UInt16) -> String {
        start == 0 ? "any" : start == end ? "\(start)" : "\(start)-\(end)"
    }
}

/// A tracked flow against its pod's current policy: `current`: allowed under it; `stale`: under
/// an older one (decided again on its next packet); `orphan`: its pod is gone.
public enum FlowState: String, CaseIterable, Sendable {
    case current, stale, orphan

    public var name: StaticString {
        switch self {
        case .current: "current"
        case .stale: "stale"
        case .orphan: "orphan"
        }
    }
}

/// `conntrack`: one row per flow, oriented as its first packet went.
public final class ConntrackLayout: MapLayout {
    public let context: DecodeContext
    public var title: String { "netfence conntrack" }
    public var columns: [Column] {
        [context.podColumn, Column("interface", "IFACE", width: 15), Column("direction", "DIR", width: 7)]
            + Column.flow + [Column("icmpID", "ICMP ID", width: 7)]
            + [Column("state", "STATE", width: 7), Column("revision", "REV", width: 5), Column("tier", "TIER", width: 14),
               context.policyColumn, Column("rule", "RULE", width: 4), Column("ageSeconds", "AGE", width: 10)]
    }

    /// What each registered pod's flows show, made once: a table holds many flows per pod.
    private struct PodColumns {
        let pod: FieldValue, interface: FieldValue
        /// The pod's current policy revision; nil when the pod is gone.
        let revision: UInt32?
    }
    private let pods: [UInt32: PodColumns]
    /// At most how many bytes a row's values take: its names (pod, interface, policy), then
    /// 12 fields of at most 64 B. Rows repeat their names: each is looked up once per writer.
    private let valueBytes: Int

    public init(context: DecodeContext) {
        self.context = context
        pods = context.revisions.reduce(into: [:]) { pods, registered in
            let (podID, revision) = registered
            let known = context.attribution == nil || context.attribution?.pod(podID) != nil
            pods[podID] = PodColumns(pod: context.pod(podID), interface: context.interface(podID), revision: known ? revision : nil)
        }
        // Names are escaped (6 bytes per byte at most) and quoted; ids stand in for unknown ones (`rule-id 4294967295`).
        valueBytes = 3 * (2 + 6 * max(context.attribution?.longestNameBytes ?? 0, 20)) + 12 * 64
    }

    public func state(_ entry: ConntrackEntry) -> FlowState { Self.state(entry, of: pods[entry.podID]) }

    private static func state(_ entry: ConntrackEntry, of pod: PodColumns?) -> FlowState {
        guard let current = pod?.revision else { return .orphan }
        return entry.revision == current ? .current : .stale
    }

    public func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let entry = ConntrackEntry.decode(key: key, value: value) else { return }
        write(entry, into: rows)
    }

    /// The hottest dump there is: fields go straight in, no row array, and the runs of
    /// fields a pod or a rule decides (names above all) are written once and copied after.
    public func write(_ entry: ConntrackEntry, into rows: RecordWriter) {
        let source = entry.source, destination = entry.destination
        rows.writeRow(valueBytes: valueBytes) { row in
            row.putRepeated(.init(UInt64(entry.podID), UInt64(entry.direction.rawValue) << 8 | UInt64(entry.protocolNumber))) { row in
                let pod = pods[entry.podID]
                row.put(pod?.pod ?? context.pod(entry.podID))
                row.put(pod?.interface ?? context.interface(entry.podID))
                row.put(.word(entry.direction.name))
                row.put(context.protocolName(entry.protocolNumber))
            }
            // ICMP keeps its echo identifier where ports would be: shown as what it is, ports 0.
            let echo = IPProtocolNumber.carriesEchoIdentifier(entry.protocolNumber)
            row.put(.address(source.address))
            row.put(.number(echo ? 0 : UInt64(source.port)))
            row.put(.address(destination.address))
            row.put(.number(echo ? 0 : UInt64(destination.port)))
            row.put(echo ? .number(UInt64(source.port)) : .none)
            row.putRepeated(.init(UInt64(entry.podID) << 32 | UInt64(entry.revision), UInt64(entry.ruleID) << 8 | UInt64(entry.tier.rawValue))) { row in
                let (policy, rule) = context.policy(entry.ruleID)
                row.put(.word(Self.state(entry, of: pods[entry.podID]).name))
                row.put(.number(UInt64(entry.revision)))
                row.put(.word(entry.tier.name))
                row.put(policy)
                row.put(rule)
            }
            row.put(context.age(entry.lastSeenNanoseconds))
        }
    }
}

/// A pod's policy trie: one row per rule of each prefix.
public struct PolicyTrieLayout: MapLayout {
    let context: DecodeContext
    public var title: String { "netfence policy trie" }
    public var columns: [Column] {
        [Column("cidr", "CIDR", width: 43), Column("proto", "PROTO", width: 6), Column("ports", "PORTS", width: 11),
         Column("action", "ACTION", width: 6), Column("tier", "TIER", width: 14), Column("priority", "PRIO", width: 5),
         Column("audit", "AUDIT", width: 5), context.policyColumn, Column("rule", "RULE", width: 4)]
            + (context.hits == nil ? [] : [Column("hitsAllowed", "HITS ALLOWED", width: 12), Column("hitsDenied", "HITS DENIED", width: 11)])
    }

    public func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let prefix = LPMKeyCodec.decode(key), let rules = RuleSetCodec.decode(value) else { return }
        for rule in rules {
            let (policy, index) = context.policy(rule.ruleID)
            let proto = rule.protocolNumber == IPProtocolNumber.any ? FieldValue.text("any") : context.protocolName(rule.protocolNumber)
            let ports = FieldValue.text(Names.ports(start: rule.portStart, end: rule.portEnd))
            let audit = FieldValue.text(rule.audit ? "yes" : "no")
            if let hits = context.hits {
                let hit = hits[rule.ruleID]
                rows.write(.prefix(prefix), proto, ports, .word(rule.action.name), .word(rule.tier.name), .number(UInt64(rule.priority)), audit,
                           policy, index, .number(hit?.allowed ?? 0), .number(hit?.denied ?? 0))
            } else {
                rows.write(.prefix(prefix), proto, ports, .word(rule.action.name), .word(rule.tier.name), .number(UInt64(rule.priority)), audit,
                           policy, index)
            }
        }
    }
}

/// `pods`: the pod behind each host veth, its revision, states, tries and domain-rule slot.
struct PodsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence pods" }
    var columns: [Column] {
        [Column("ifindex", "IFINDEX", width: 7), context.podColumn, Column("interface", "IFACE", width: 15),
         Column("podID", "POD ID", width: 6), Column("revision", "REV", width: 5),
         Column("ingress", "INGRESS", width: 16), Column("egress", "EGRESS", width: 16),
         Column("ingressTrie", "IN TRIE", width: 7), Column("egressTrie", "EG TRIE", width: 7), Column("slot", "SLOT", width: 4)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard key.count == 4, let record = PodRecord.decode(value) else { return }
        func trie(_ direction: Direction) -> FieldValue { record.tries[direction].map { .number(UInt64($0.rawValue)) } ?? .none }
        rows.write(.number(UInt64(key.loadUnaligned(as: UInt32.self))), context.pod(record.podID), context.interface(record.podID),
                   .number(UInt64(record.podID)), .number(UInt64(record.revision)),
                   .word((record.states[.ingress] ?? .defaultAllow).name), .word((record.states[.egress] ?? .defaultAllow).name),
                   trie(.ingress), trie(.egress), .number(UInt64(record.slot)))
    }
}

/// `revisions`: each registered pod's current policy revision.
struct RevisionsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence revisions" }
    var columns: [Column] { [Column("podID", "POD ID", width: 6), context.podColumn, Column("revision", "REV", width: 5)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let podID = key.loadUnaligned(as: UInt32.self), revision = value.loadUnaligned(as: UInt32.self)
        guard revision != 0 || context.attribution?.pod(podID) != nil else { return }  // an unused slot
        rows.write(.number(UInt64(podID)), context.pod(podID), .number(UInt64(revision)))
    }
}

/// `policies`: which trie (map id) sits at each index, which pods read it, and the role of one
/// that holds no policy (`spare`, `arriving`, `cooling`: kept by `loader serve`'s keeper or by commands).
struct PoliciesLayout: MapLayout {
    let context: DecodeContext
    let roles: [TrieIndex: TrieRole]
    var title: String { "netfence policies (array of tries)" }
    var columns: [Column] {
        [Column("index", "INDEX", width: 6), Column("mapID", "MAP ID", width: 6), Column("direction", "DIR", width: 7),
         Column("pods", "PODS", width: 4), context.podColumn, Column("role", "ROLE", width: 8)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let raw = key.loadUnaligned(as: UInt32.self), mapID = value.loadUnaligned(as: UInt32.self)
        guard mapID != 0 else { return }
        // No reader and no role: a trie let go for a keeper to recycle, or one an interrupted change left (reconcile deletes it).
        let index = UInt16(exactly: raw).flatMap(TrieIndex.init)
        let readers = index.flatMap { context.trieReaders[$0] }
        let first: FieldValue = readers.flatMap(\.podIDs.first).map(context.pod) ?? .none
        rows.write(.number(UInt64(raw)), .number(UInt64(mapID)), readers.map { .word($0.direction.name) } ?? .none,
                   .number(UInt64(readers?.podIDs.count ?? 0)), first, index.flatMap { roles[$0] }.map { .word($0.name) } ?? .none)
    }
}

/// `policy_digests`: what each trie holds, as the loader shares tries by it; a trie that holds no
/// policy yet says its role (`spare`, `arriving`, `cooling`) instead.
struct PolicyDigestsLayout: MapLayout {
    var title: String { "netfence policy digests" }
    var columns: [Column] { [Column("index", "INDEX", width: 6), Column("mapID", "MAP ID", width: 6), Column("digest", "SHA-256", width: 64)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let record = TrieDigestRecord.decode(Array(value)) else { return }  // an index never written, or cleared
        rows.write(.number(UInt64(key.loadUnaligned(as: UInt32.self))), .number(UInt64(record.mapID)),
                   record.role.map { .word($0.name) } ?? .text(record.digest.description))
    }
}

/// `settings`: the runtime knobs.
struct SettingsLayout: MapLayout {
    var title: String { "netfence settings" }
    var columns: [Column] {
        [Column("eventLevel", "EVENT LEVEL", width: 11), Column("snaplen", "SNAPLEN", width: 7), Column("captureVerdicts", "CAPTURE", width: 7),
         Column("podEventRate", "POD RATE/S", width: 10), Column("nodeEventRate", "NODE RATE/S", width: 11)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let settings = DatapathSettings.decode(value) else { return rows.write(.text("unknown: \(HexLayout.hex(value))")) }
        rows.write(.word(settings.eventLevel.name), .number(UInt64(settings.snaplen)), .word(settings.captureVerdicts.name),
                   settings.podEventRate.map { .number(UInt64($0)) } ?? .none, settings.nodeEventRate.map { .number(UInt64($0)) } ?? .none)
    }
}

/// `pod_event_levels`: pods with their own event level (the rest follow the node's).
struct PodEventLevelsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence pod event levels" }
    var columns: [Column] { [context.podColumn, Column("eventLevel", "EVENT LEVEL", width: 11)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let level = PodEventLevelCodec.decode(value) ?? nil else { return }
        rows.write(context.pod(key.loadUnaligned(as: UInt32.self)), .word(level.name))
    }
}

/// `event_limits`: what the event rate limits suppressed, by pod, direction and verdict (rows with none left out).
struct EventLimitsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence event limits" }
    var columns: [Column] {
        [context.podColumn, Column("direction", "DIR", width: 7), Column("suppressedAllow", "SUPPRESSED ALLOW", width: 16),
         Column("suppressedDeny", "SUPPRESSED DENY", width: 15), Column("suppressedAudit", "SUPPRESSED AUDIT", width: 16)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let (podID, direction) = EventLimitIndex.podAndDirection(key.loadUnaligned(as: UInt32.self)),
              let counts = EventCounts.suppressed(inLimit: value), counts.total > 0 else { return }
        rows.write(context.pod(podID), .word(direction.name), .number(counts.byVerdict[.allow] ?? 0), .number(counts.byVerdict[.deny] ?? 0),
                   .number(counts.byVerdict[.audit] ?? 0))
    }
}

/// `event_rings`: each CPU's ring of events, by its positions (the events themselves: `ebpf events`).
struct EventRingsLayout: MapLayout {
    var title: String { "netfence event rings (\(DatapathLimits.eventCPURingBytes / 1024) KiB a CPU)" }
    var columns: [Column] {
        [Column("cpu", "CPU", width: 4), Column("writtenBytes", "WRITTEN B", width: 12), Column("readBytes", "READ B", width: 12),
         Column("waitingBytes", "WAITING B", width: 10), Column("readerAsleep", "READER ASLEEP", width: 13)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let ring = EventRingHeader.decode(value) else { return }
        rows.write(.number(UInt64(key.loadUnaligned(as: UInt32.self))), .number(ring.written), .number(ring.read), .number(ring.waiting),
                   .word(ring.readerAsleep(at: HostClock.monotonic.nanoseconds) ? "yes" : "no"))
    }
}

/// `counters`: packets and bytes by pod, direction and verdict (per-CPU, summed); rows with nothing counted are left out.
struct CountersLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence counters" }
    var columns: [Column] {
        [context.podColumn, Column("direction", "DIR", width: 7), Column("verdict", "VERDICT", width: 7),
         Column("packets", "PACKETS", width: 12), Column("bytes", "BYTES", width: 14),
         Column("packetsPerCPU", "PACKETS/CPU", width: 16), Column("bytesPerCPU", "BYTES/CPU", width: 16)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let index = CounterIndex(rawValue: key.loadUnaligned(as: UInt32.self))
        let perCPU = PacketCounterCodec.perCPU(value)
        let packets = context.perCPU(perCPU.map(\.packets)), bytes = context.perCPU(perCPU.map(\.bytes))
        guard packets.sum != 0 else { return }
        rows.write(context.pod(index.podID), .word(index.direction.name), .word(index.verdict.name),
                   .number(packets.sum), .number(bytes.sum), packets.slots, bytes.slots)
    }
}

/// `stats`: the node-wide counters (per-CPU, summed).
struct StatsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence stats" }
    var columns: [Column] { [Column("stat", "STAT", width: 20), Column("count", "COUNT", width: 12), Column("perCPU", "PER CPU", width: 16)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let index = key.loadUnaligned(as: UInt32.self)
        let count = context.perCPU(stride(from: 0, to: value.count - 7, by: 8).map { value.loadUnaligned(fromByteOffset: $0, as: UInt64.self) })
        rows.write(DatapathStat(rawValue: index).map { .word($0.name) } ?? .text("stat \(index)"), .number(count.sum), count.slots)
    }
}

/// `generations`: how many times netfence changed pods and grants (readers keep what they read until it moves).
struct GenerationsLayout: MapLayout {
    var title: String { "netfence generations" }
    var columns: [Column] { [Column("map", "MAP", width: 8), Column("changes", "CHANGES", width: 12)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let index = key.loadUnaligned(as: UInt32.self)
        rows.write(DatapathGeneration(rawValue: index).map { .word($0.name) } ?? .text("generation \(index)"),
                   .number(value.loadUnaligned(as: UInt64.self)))
    }
}

/// `fragments`: first-fragment verdicts kept for later fragments.
struct FragmentsLayout: MapLayout {
    let context: DecodeContext
    var title: String { "netfence fragments" }
    var columns: [Column] {
        [Column("ifindex", "IFINDEX", width: 7), Column("id", "ID", width: 10)] + Column.flow
            + [Column("verdict", "VERDICT", width: 7), Column("tier", "TIER", width: 14)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        guard let entry = FragmentVerdict.decode(key: key, value: value) else { return }
        rows.write(.number(UInt64(entry.ifindex)), .number(UInt64(entry.identification)), context.protocolName(entry.protocolNumber),
                   .address(entry.source), .number(UInt64(entry.sourcePort)), .address(entry.destination), .number(UInt64(entry.destinationPort)),
                   .word(entry.verdict.name), .word(entry.tier.name))
    }
}

/// Any map nothing else describes: key and value bytes in hex.
struct HexLayout: MapLayout {
    var title: String { "bytes" }
    var columns: [Column] { [Column("key", "KEY", width: 24), Column("value", "VALUE", width: 24)] }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        rows.write(.text(Self.hex(key)), .text(Self.hex(value)))
    }

    static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 3)
        for (index, byte) in bytes.enumerated() {
            if index > 0 { text.append(UInt8(ascii: " ")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
