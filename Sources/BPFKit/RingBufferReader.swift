import CNetfenceShim
import Glibc
import HostKit

/// The one consumer of a BPF ring buffer map (a `RecordRing`): its position is the map's consumer position.
public final class RingBufferReader: RecordRing {
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

    public func visitReady(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
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

    public func waitForRecords(milliseconds: Int32) -> Int32 { nf_ring_wait(ring, milliseconds) }

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
