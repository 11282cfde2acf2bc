import BPFKit
import Datapath
import DatapathModel
import Foundation
import HostKit
import Loader
import PolicyInput

/// What a reader of the verdict log gets: events, and losses it must not hide.
public enum EventItem: Sendable {
    case event(DecodedEvent)
    /// Events the datapath could not write (their CPU's ring was full) since the last report.
    case lost(UInt64)
    /// Events a rate limit kept out of the ring since the last report, for one pod and direction.
    case suppressed(SuppressedEvents)
    /// Events a watcher fell a ring behind on, at most this many: the consumer gave them back and
    /// the datapath wrote over them before the watcher read them (the consumer had them all).
    case skipped(atMost: UInt64)
}

/// What the event rate limits suppressed for one pod's direction since the last report.
public struct SuppressedEvents: Sendable, Equatable {
    /// `namespace/name`, or `pod-id N` for a pod detached since.
    public let pod: String
    public let direction: Direction
    public let counts: EventCounts
    /// Over how many seconds: since this reader's last report (nil: since before it started).
    public let seconds: Double?

    public init(pod: String, direction: Direction, counts: EventCounts, seconds: Double?) {
        self.pod = pod
        self.direction = direction
        self.counts = counts
        self.seconds = seconds
    }

    /// `4213 deny, 12 allow`: the verdicts with a count, denies first.
    public var countsText: String {
        Verdict.allCases.compactMap { verdict in counts.byVerdict[verdict].flatMap { $0 == 0 ? nil : "\($0) \(verdict)" } }.joined(separator: ", ")
    }
}

/// A reader of the datapath's event rings: drains records, decodes and attributes
/// them, and reports lost events (the datapath's counter, minus what was reported
/// before, kept in bpffs so no loss goes unreported).
///
/// Its rings' consumer, or a watcher beside it (`watching`): a watcher sees every
/// event the consumer sees and takes none from it. It reports losses and rate-limited
/// events from its own marks; only when nobody holds the consumer lock
/// (`Loader.lockEventConsumer`: no flow log runs) does it give back what it read and
/// mark what it reported, as a consumer would.
public final class EventStream {
    private let loader: Loader
    private let reader: EventRingReader
    /// A watcher's marks of what it reported (nil: the consumer's, in bpffs).
    private let watcherReports: Loader.WatcherReports?
    /// A watcher's bytes skipped (`EventRingReader.skippedBytes`) as of its last loss report.
    private var skippedReported: UInt64 = 0
    /// The datapath's CLOCK_MONOTONIC stamps as wall-clock dates.
    private let clock = HostClock.monotonic.dates()
    private var decoder: EventDecoder
    private var lastLossCheck = Date.distantPast
    private var lastSuppressionCheck: Date?
    /// How often what the rate limits suppressed is reported.
    public var suppressionInterval: TimeInterval = 10
    /// Events carry their captured packet (a copy per event: only for a reader that writes packets).
    public var keepsPackets = false

    /// The rings' consumer (its caller holds the consumer lock where other readers may run), or with
    /// `watching` a watcher.
    public init(loader: Loader, watching: Bool) throws {
        self.loader = loader
        reader = try loader.datapath.eventReader(watching: watching)
        watcherReports = watching ? Loader.WatcherReports() : nil
        decoder = EventDecoder(attribution: try loader.attribution())
    }

    /// Gives the rings back the space of every event read: a watcher only while nobody holds the consumer
    /// lock, and then it marks what it reported too.
    public func commit() throws {
        guard let watcherReports else { return reader.commit() }
        // Nothing read past what the rings gave back, nothing reported since: no lock to try (a watcher
        // beside a flow log that keeps up would otherwise try it every 50 ms, for nothing).
        let ahead = zip(reader.position.cpus, reader.committedPosition.cpus).contains { $0 > $1 }
        guard ahead || watcherReports.unmarked else { return }
        guard let lock = try? loader.lockEventConsumer(timeout: 0) else { return }
        try withExtendedLifetime(lock) {
            reader.commit()
            try loader.markReported(watcherReports)
        }
    }

    /// During a visit of an event, its place in its CPU's ring.
    public var recordEnd: EventRingMark { reader.recordEnd }
    /// Where the next reader would start now.
    public var committedPosition: EventRingPosition { reader.committedPosition }
    /// The rings' map id: positions mean something only for the same rings.
    public var ringID: UInt32 { reader.mapID }

    /// Counts the events before `position` as read (a restarted writer skipping what it wrote
    /// before it died); false when the position is not of these rings.
    public func skip(to position: EventRingPosition) -> Bool { reader.skip(to: position) }

    /// The longest `namespace/name` of the pods attached when the stream began, for table widths.
    public var longestPodName: Int { decoder.attribution.longestPodName }

    /// Everything ready now, item by item: a loss report first (at most once
    /// per `lossInterval`), what rate limits suppressed (at most once per
    /// `suppressionInterval`, and first at once), then events, oldest first. With `wait`, when nothing
    /// is ready it waits up to that many seconds for the first event.
    public func drain(lossInterval: TimeInterval = 1, waitingUpTo wait: Double? = nil, _ visit: (EventItem) throws -> Void) throws {
        try read(lossInterval: lossInterval, waitingUpTo: wait, visit)
        try commit()
    }

    /// As `drain`, leaving the events read in the rings until `commit` (a reader that must make
    /// them durable first); during a visit `recordEnd` says where a reader resumes after it.
    public func read(lossInterval: TimeInterval = 1, waitingUpTo wait: Double? = nil, _ visit: (EventItem) throws -> Void) throws {
        let now = Date()
        if now.timeIntervalSince(lastLossCheck) >= lossInterval {
            lastLossCheck = now
            try loader.reportLostEvents(watcher: watcherReports) { try visit(.lost($0)) }
            // A watcher that fell a ring behind skipped records it cannot count: at most this many (the shortest record's).
            let skipped = reader.skippedBytes
            if skipped > skippedReported {
                try visit(.skipped(atMost: max(1, (skipped - skippedReported) / UInt64(ABISizes.eventRecord(captured: 0)))))
                skippedReported = skipped
            }
        }
        if lastSuppressionCheck.map({ now.timeIntervalSince($0) >= suppressionInterval }) ?? true {
            let seconds = lastSuppressionCheck.map { now.timeIntervalSince($0) }
            lastSuppressionCheck = now
            try loader.reportSuppressedEvents(watcher: watcherReports) { podID, direction, counts in
                let pod = decoder.attribution.pod(podID)?.pod ?? "pod-id \(podID)"
                try visit(.suppressed(SuppressedEvents(pod: pod, direction: direction, counts: counts, seconds: seconds)))
            }
        }
        var refreshed = false
        try reader.read(waitingUpTo: wait) { record in
            guard let event = VerdictEvent.decode(record) else { return }
            if !refreshed && !decoder.knows(event) {
                decoder = EventDecoder(attribution: try loader.attribution())  // a pod or object newer than our view
                refreshed = true
            }
            let packet = event.captured == 0 || !keepsPackets ? [] : Array(VerdictEvent.packet(in: record))
            try visit(.event(decoder.decode(event, packet: packet, monotonicToWall: clock.date)))
        }
    }
}
