import BPFKit
import Datapath
import DatapathModel
import Glibc
import HostKit

/// How full one of the datapath's maps is.
public struct MapFill: Encodable, Sendable {
    public let name: String
    public let entries: Int
    public let maxEntries: Int
    /// Percent of `maxEntries` in use, one decimal.
    public var fillPercent: Double { Self.percent(entries, of: maxEntries) }

    /// `part` as a percent of `whole`, one decimal (0 of nothing).
    static func percent(_ part: Int, of whole: Int) -> Double { whole == 0 ? 0 : (Double(part) * 1000 / Double(whole)).rounded() / 10 }

    enum CodingKeys: String, CodingKey { case name, entries, maxEntries, fillPercent }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(entries, forKey: .entries)
        try container.encode(maxEntries, forKey: .maxEntries)
        try container.encode(fillPercent, forKey: .fillPercent)
    }
}

/// A DNS proxy as the datapath knows it: its address, its process, whether its heartbeat is recent.
public struct DNSProxyState: Encodable, Sendable {
    public let address: String
    public let port: UInt16
    public let pid: UInt32
    /// Its process lives and its heartbeat is recent: grants allow new flows.
    public let running: Bool
    public let heartbeatAgeSeconds: Double?
    /// What the proxy counted since it started (`spoofed`: upstream answers dropped as forged), by counter name.
    public let counters: [String: UInt64]
}

/// The datapath's events as an operator asks after them: which are written, whether the rings
/// fill, whether a reader sleeps on them, what was lost.
public struct EventsState: Encodable, Sendable {
    /// The node's level (`none`, `deny`, `all`) and what is captured (`snaplen` 0: nothing).
    public let level: String
    public let snaplen: Int
    public let captureVerdicts: String
    /// One ring per CPU, `ringBytes` each.
    public let rings: Int
    public let ringBytes: Int
    /// Bytes written and not read yet, in all rings, and the fullest ring's share of its bytes.
    public let waitingBytes: UInt64
    public let fullestPercent: Double
    /// The consumer (a flow log) sleeps on the rings now.
    public let readerAsleep: Bool
    /// The process holding the consumer lock (`pid N (netfence ebpf events … --output-file …)`), nil: no flow log runs.
    public let consumer: String?
    /// Events the datapath could not write since it was loaded, and of those, what no reader reported yet.
    public let lost: UInt64
    public let lostUnreported: UInt64
}

extension Loader {
    /// The state of the datapath's events (`EventsState`); reads the rings in place and takes nothing from them.
    public func eventsState() throws -> EventsState {
        let settings = try datapath.readSettings(), rings = try datapath.eventReader().headers
        let lost = try datapath.stat(.eventsLost), reported = try state.reportedLostEvents()
        let now = HostClock.monotonic.nanoseconds
        let fullest = Int(rings.map(\.waiting).max() ?? 0)
        return EventsState(level: settings.eventLevel.description, snaplen: settings.snaplen, captureVerdicts: settings.captureVerdicts.description,
                           rings: rings.count, ringBytes: DatapathLimits.eventCPURingBytes, waitingBytes: rings.map(\.waiting).reduce(0, +),
                           fullestPercent: MapFill.percent(fullest, of: DatapathLimits.eventCPURingBytes),
                           readerAsleep: rings.contains { $0.readerAsleep(at: now) },
                           consumer: FileLock.holder(of: Datapath.mapPin(root.path, Self.eventConsumerLockPin)),
                           lost: lost, lostUnreported: lost > reported ? lost - reported : 0)
    }

    /// The fill of the maps that grow with the node: pods, conntrack, fragments, domain grants.
    public func mapFill() throws -> [MapFill] {
        try Datapath.growingMaps.map { name in
            let fill = try datapath.fill(ofMap: name)
            return MapFill(name: name, entries: fill.entries, maxEntries: fill.maxEntries)
        }
    }

    /// Every DNS proxy that registered, and whether it serves now.
    public func dnsProxies() throws -> [DNSProxyState] {
        let beat = try datapath.dnsHeartbeatNanoseconds()
        let now = HostClock.monotonic.nanoseconds
        let alive = beat != 0 && beat + DatapathLimits.dnsHeartbeatTimeoutNanoseconds > now
        return try datapath.registeredDNSProxies().map { address, record in
            let stats = (try? state.dnsProxyStats(address: address)) ?? nil
            return DNSProxyState(address: address.description, port: record.port, pid: record.pid,
                                 running: alive && record.pid != 0 && ProcessStatus.isRunning(pid_t(record.pid)),
                                 heartbeatAgeSeconds: beat == 0 ? nil : Double(now &- beat) / 1e9,
                                 counters: stats.map { stats in
                                     Dictionary(uniqueKeysWithValues: DNSProxyStats.Counter.allCases.map { ($0.description, stats[$0]) })
                                 } ?? [:])
        }
    }

    /// Every registered pod's datapath record (tries, live slot, revision, states), by pod id.
    public func liveRecords() throws -> [UInt32: PodRecord] {
        Dictionary(try datapath.registeredPods().map { ($0.record.podID, $0.record) }) { first, _ in first }
    }

    /// The trie `pod` enforces now in `direction`; nil when nothing selects it there.
    public func liveTrie(of pod: PodReference, direction: Direction) throws -> BPFMap? {
        guard let (_, registration) = try state.pod(pod), let record = try datapath.pod(ifindex: registration.ifindex) else {
            throw LoaderError.unknownPod(pod)
        }
        return try datapath.trieID(record, direction: direction).map(BPFMap.init(id:))
    }

    /// The event rings' consumer lock (flock on their pin). The consumer that must give back only
    /// what it made durable (a flow log) holds it while it reads; a watcher takes it only to give
    /// back what it read, when nobody holds it.
    public func lockEventConsumer(timeout: Double) throws(FileLock.Failure) -> FileLock {
        try FileLock.acquire(file: Datapath.mapPin(root.path, Self.eventConsumerLockPin), mode: .exclusive, timeout: timeout)
    }

    /// The map whose pin carries the consumer lock: the rings themselves.
    static let eventConsumerLockPin = "event_rings"

    /// What a watcher reported of the datapath's losses and rate-limited events: its own marks, which
    /// start where the consumer's (in bpffs) stood, so every watcher reports what it saw happen and
    /// the consumer still reports everything. Written to bpffs only by `markReported`.
    public final class WatcherReports {
        fileprivate var lost: UInt64?
        fileprivate var suppressed: [UInt64: (podID: UInt32, direction: Direction, counts: EventCounts)] = [:]
        /// A report since the last `markReported`: only then is there something to mark.
        public fileprivate(set) var unmarked = false
        public init() {}
        fileprivate static func key(_ podID: UInt32, _ direction: Direction) -> UInt64 { UInt64(podID) << 8 | UInt64(direction.rawValue) }
    }

    /// Marks in bpffs what `watcher` reported, as the consumer would: for a watcher that holds the
    /// consumer lock (nobody else consumes), so a later reader does not report it again.
    public func markReported(_ watcher: WatcherReports) throws {
        guard watcher.unmarked else { return }
        defer { watcher.unmarked = false }
        if let lost = watcher.lost, lost != (try state.reportedLostEvents()) { try state.setReportedLostEvents(lost) }
        for (podID, direction, counts) in watcher.suppressed.values
        where counts != (try state.reportedSuppressedEvents(podID: podID, direction: direction)) {
            try state.setReportedSuppressedEvents(counts, podID: podID, direction: direction)
        }
    }

    /// Hands `report` the events the datapath could not write since a reader last
    /// reported them (only when there are some), then marks them reported: a reader
    /// that dies before reporting leaves them for the next one. A watcher (`watcher`)
    /// marks them in its own marks only.
    ///
    /// The one place a reader writes state: how many losses were reported is the
    /// event rings' consumer position for losses, and like the rings' own consumer
    /// positions it belongs to whoever consumes the rings, not to a change of policy.
    /// So it takes no writer lock.
    public func reportLostEvents(watcher: WatcherReports? = nil, _ report: (UInt64) throws -> Void) throws {
        let total = try datapath.stat(.eventsLost)
        let reported = try watcher?.lost ?? state.reportedLostEvents()
        if total > reported { try report(total - reported) }
        guard total != reported else { return }  // below: the counter was reset (re-init with --migrate)
        if let watcher { (watcher.lost, watcher.unmarked) = (total, true) } else { try state.setReportedLostEvents(total) }
    }

    /// Hands `report` the events the rate limits suppressed since a reader last reported
    /// them, per pod id and direction (only where there are some), then marks them
    /// reported: as `reportLostEvents`, for the limits.
    public func reportSuppressedEvents(watcher: WatcherReports? = nil,
                                       _ report: (_ podID: UInt32, _ direction: Direction, _ counts: EventCounts) throws -> Void) throws {
        for (podID, direction, total) in try datapath.suppressedEvents() {
            let key = WatcherReports.key(podID, direction)
            let reported = try watcher?.suppressed[key]?.counts ?? state.reportedSuppressedEvents(podID: podID, direction: direction)
            guard total != reported else { continue }
            var new = EventCounts()
            for verdict in Verdict.allCases {
                let now = total.byVerdict[verdict] ?? 0, before = reported.byVerdict[verdict] ?? 0
                new.byVerdict[verdict] = now >= before ? now - before : now  // below: reset (the id went to another pod), all of it is new
            }
            if new.total > 0 { try report(podID, direction, new) }
            if let watcher {
                (watcher.suppressed[key], watcher.unmarked) = ((podID, direction, total), true)
            } else {
                try state.setReportedSuppressedEvents(total, podID: podID, direction: direction)
            }
        }
    }

    /// The ids of the two programs pinned under the root.
    public func programIDs() throws -> [String: UInt32] { try datapath.programIDs() }
}
