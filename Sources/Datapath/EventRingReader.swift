import BPFKit
import CNetfenceShim
import DatapathModel
import Glibc
import HostKit

/// Where a reader of the event rings stands: each CPU ring's byte position.
public struct EventRingPosition: Equatable, Sendable, CustomStringConvertible {
    public var cpus: [UInt64]

    public init(_ cpus: [UInt64]) { self.cpus = cpus }

    /// Moves the position of `mark`'s CPU past its record.
    public mutating func advance(to mark: EventRingMark) {
        if mark.cpu < cpus.count { cpus[mark.cpu] = mark.end }
    }

    /// `4096,0,88`: the CPUs' positions in order.
    public var description: String { cpus.map(String.init).joined(separator: ",") }

    public init?(_ text: some StringProtocol) {
        var cpus: [UInt64] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let position = UInt64(part) else { return nil }
            cpus.append(position)
        }
        self.cpus = cpus
    }
}

/// One record's place: its CPU's ring, and the position after it there.
public struct EventRingMark: Equatable, Sendable {
    public let cpu: Int
    public let end: UInt64

    public init(cpu: Int, end: UInt64) {
        self.cpu = cpu
        self.end = end
    }
}

/// A reader of the datapath's event rings (bpf/netfence_abi.h, struct nf_event_ring), a
/// `RecordRing` whose records come oldest first across CPUs. The consumer's positions are the
/// rings' own; a watcher reads beside it from positions of its own (`watching`).
public final class EventRingReader: RecordRing {
    private let rings: OpaquePointer
    private let batch: UnsafeMutablePointer<nf_event_record>
    /// Records one peek hands out at most.
    private let batchSize: Int
    /// The rings' map id: a position means something only for the same map.
    public let mapID: UInt32
    /// Rings, one per CPU the kernel may run programs on.
    public let cpus: Int

    /// Reads beside the consumer: gives nothing back unless told (`commit`), sleeps on no doorbell,
    /// copies each record out and keeps it only if the consumer left its bytes alone meanwhile.
    public let watching: Bool

    /// A reader of `rings` (the per-CPU rings), woken through `doorbell` (a ring buffer); a watcher with `watching`.
    public init(rings map: BPFMap, doorbell: BPFMap, watching: Bool = false) throws {
        let info = try map.info(), doorbellInfo = try doorbell.info()
        guard info.type == .array, Int(info.valueSize) == ABISizes.eventRing, doorbellInfo.type == .ringbuf,
              doorbellInfo.maxEntries == UInt32(DatapathLimits.eventDoorbellBytes) else {
            throw SystemError("read event rings", "map \(info.name) (a \(info.type) map of \(info.valueSize)-byte values)", errno: EINVAL)
        }
        guard let rings = nf_event_rings_open(map.descriptor.rawValue, info.maxEntries, doorbell.descriptor.rawValue, watching ? 1 : 0) else {
            throw SystemError("map event rings", "map \(info.name)", errno: errno)
        }
        self.rings = rings
        self.watching = watching
        mapID = info.id
        cpus = Int(info.maxEntries)
        batchSize = watching ? Int(NF_EVENT_WATCH_BATCH) : 4096
        batch = .allocate(capacity: batchSize)
    }

    deinit {
        nf_event_rings_close(rings)
        batch.deallocate()
    }

    public func visitReady(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        var total = 0
        while true {
            let count = Int(nf_event_rings_peek(rings, batch, Int32(batchSize)))
            for index in 0..<count {
                let record = batch[index]
                recordEnd = EventRingMark(cpu: Int(record.cpu), end: record.end)
                try visit(UnsafeRawBufferPointer(start: record.event, count: Int(record.length)))
            }
            total += count
            if count < batchSize { return total }
        }
    }

    /// Sleeps until a quarter of a ring fills (the doorbell) or `milliseconds` pass.
    public func waitForRecords(milliseconds: Int32) -> Int32 { nf_event_rings_wait(rings, milliseconds) }

    /// Gives back the space of every record read so far.
    public func commit() { nf_event_rings_commit(rings) }

    /// A watcher's bytes of records it fell a whole ring behind on, and skipped: the consumer had
    /// given them back and the datapath was writing there again.
    public var skippedBytes: UInt64 { nf_event_rings_skipped(rings) }

    /// During a visit, the record's place: what a reader that has made the records up to
    /// this one durable would resume after (`EventRingPosition.advance`, `skip(to:)`).
    public private(set) var recordEnd = EventRingMark(cpu: 0, end: 0)

    /// Each CPU's ring as it is now: its positions and its reader's sleep (read in place, not copied).
    public var headers: [EventRingHeader] {
        (0..<UInt32(cpus)).map {
            EventRingHeader(written: nf_event_rings_head(rings, $0), read: nf_event_rings_committed(rings, $0),
                            readerSleepsUntil: nf_event_rings_sleeps_until(rings, $0))
        }
    }

    /// The positions after the last records read (committed or not).
    public var position: EventRingPosition { EventRingPosition((0..<cpus).map { nf_event_rings_pending(rings, UInt32($0)) }) }
    /// The positions committed: where the next reader would start.
    public var committedPosition: EventRingPosition {
        EventRingPosition((0..<cpus).map { nf_event_rings_committed(rings, UInt32($0)) })
    }

    /// Counts everything before `position` as read and committed, on each CPU where it is
    /// ahead of the committed position (a restarted reader skipping what it made durable
    /// before it died). False when a position is beyond what its CPU wrote, or the
    /// position is of other rings (another CPU count).
    public func skip(to position: EventRingPosition) -> Bool {
        guard position.cpus.count == cpus else { return false }
        var skipped = true
        for (cpu, target) in position.cpus.enumerated() where target > nf_event_rings_committed(rings, UInt32(cpu)) {
            if nf_event_rings_skip_to(rings, UInt32(cpu), target) != 0 { skipped = false }
        }
        return skipped
    }
}
