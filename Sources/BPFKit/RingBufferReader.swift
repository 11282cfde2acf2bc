import CNetfenceShim
import Glibc
import HostKit

/// The one consumer of a BPF ring buffer map: visits the records ready in
/// place (no copy) and gives their space back only after the visit, or, for a
/// reader that must first make what it read durable, when told (`read`, then
/// `commit`). The position is the map's own, so the next reader process
/// continues where this one committed: nothing is read twice or skipped.
public final class RingBufferReader {
    private let ring: OpaquePointer
    private let batch: UnsafeMutablePointer<nf_ring_record>
    private static let batchSize = 4096
    /// The ring map's id: a position means something only for the same map.
    public let mapID: UInt32

    /// A reader on `map` (a `ringbuf` map).
    public init(map: BPFMap) throws {
        let info = try map.info()
        guard info.type == .ringbuf else {
            throw SystemError("read ring buffer", "map \(info.name) (a \(info.type) map)", errno: EINVAL)
        }
        guard let ring = nf_ring_open(map.descriptor.rawValue, info.maxEntries) else {
            throw SystemError("open ring buffer", "map \(info.name)", errno: errno)
        }
        self.ring = ring
        mapID = info.id
        batch = .allocate(capacity: Self.batchSize)
    }

    deinit {
        nf_ring_close(ring)
        batch.deallocate()
    }

    /// Every record ready now, oldest first, each as its bytes.
    public func drain() throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        try drain { result.append(Array($0)) }
        return result
    }

    /// Visits every record ready now, oldest first: `visit` sees the record's
    /// bytes, valid only during the call. Then gives their space back. Returns how many.
    @discardableResult
    public func drain(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        try drain(waitingUpTo: nil, visit)
    }

    /// As `drain`, but when nothing is ready waits up to `timeout` seconds
    /// (nil: not at all) for a record, blocked in the kernel; a signal ends the wait.
    @discardableResult
    public func drain(waitingUpTo timeout: Double?, _ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        let count = try read(waitingUpTo: timeout, visit)
        commit()
        return count
    }

    /// As `drain` without giving the space back: the records stay the ring's
    /// (a reader killed now leaves them to the next one) until `commit`.
    @discardableResult
    public func read(waitingUpTo timeout: Double?, _ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        var total = try visitReady(visit)
        if total == 0, let timeout {
            let milliseconds = Int32(min(max(timeout, 0), 3600) * 1000)
            let status = nf_ring_wait(ring, milliseconds)
            if status < 0 { throw SystemError("wait on", "ring buffer", errno: -status) }
            total = try visitReady(visit)
        }
        return total
    }

    private func visitReady(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        var total = 0
        while true {
            let count = Int(nf_ring_peek(ring, batch, Int32(Self.batchSize)))
            for index in 0..<count {
                recordEnd = batch[index].end
                try visit(UnsafeRawBufferPointer(start: batch[index].data, count: Int(batch[index].length)))
            }
            total += count
            if count < Self.batchSize { return total }
        }
    }

    /// Gives back the space of every record read so far.
    public func commit() { nf_ring_commit(ring) }

    /// During a visit, the position after the record visited: what a reader that has
    /// made the records up to this one durable would resume at (`skip(to:)`).
    public private(set) var recordEnd: UInt64 = 0

    /// The position after the last record read (committed or not).
    public var position: UInt64 { nf_ring_pending_position(ring) }
    /// The position committed: where the next reader would start.
    public var committedPosition: UInt64 { nf_ring_consumer_position(ring) }

    /// Counts everything before `position` as read and committed (a restarted
    /// reader skipping what it made durable before it died). False when the
    /// position is not between the committed one and the producer's.
    public func skip(to position: UInt64) -> Bool { nf_ring_skip_to(ring, position) == 0 }
}
