import CLibBPF
import CNetfenceShim
import Glibc
import HostKit

/// The one consumer of a BPF ring buffer map (libbpf `ring_buffer`): drains
/// whatever records are ready, at once or after waiting for the first one.
public final class RingBufferReader {
    private let ring: OpaquePointer
    private let records: UnsafeMutablePointer<nf_ring_records>
    private let storage: UnsafeMutableRawPointer

    /// A reader on `map` (a `ringbuf` map), whose drains can hold everything
    /// the ring holds at once.
    public init(map: BPFMap) throws {
        let info = try map.info()
        guard info.type == .ringbuf else {
            throw SystemError("read ring buffer", "map \(info.name) (a \(info.type) map)", errno: EINVAL)
        }
        let capacity = Int(info.maxEntries)
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        records = .allocate(capacity: 1)
        records.initialize(to: nf_ring_records(data: storage.assumingMemoryBound(to: UInt8.self), capacity: UInt32(capacity),
                                               used: 0, count: 0, dropped: 0))
        guard let ring = nf_ring_open(map.descriptor.rawValue, records) else {
            let error = errno
            records.deallocate()
            storage.deallocate()
            throw SystemError("open ring buffer", "map \(info.name)", errno: error)
        }
        self.ring = ring
    }

    deinit {
        ring_buffer__free(ring)
        records.deallocate()
        storage.deallocate()
    }

    /// Every record ready now, oldest first, each as its bytes.
    public func drain() throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        try drain { result.append(Array($0)) }
        return result
    }

    /// Visits every record ready now, oldest first, without copying it again:
    /// `visit` sees the record's bytes, valid only during the call. Returns how many.
    @discardableResult
    public func drain(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        try drain(waitingUpTo: nil, visit)
    }

    /// As `drain`, but when nothing is ready waits up to `timeout` seconds
    /// (nil: not at all) for a record, blocked in the kernel; a signal ends the wait.
    @discardableResult
    public func drain(waitingUpTo timeout: Double?, _ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        records.pointee.used = 0
        records.pointee.count = 0
        if let timeout {
            try check(nf_ring_wait(ring, Int32(min(max(timeout, 0), 3600) * 1000)), "wait on", "ring buffer")
        } else {
            try check(nf_ring_drain(ring), "drain", "ring buffer")
        }
        var offset = 0
        let used = Int(records.pointee.used)
        while offset + 4 <= used {
            let length = Int(storage.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            try visit(UnsafeRawBufferPointer(start: storage + offset + 4, count: length))
            offset += 4 + length
        }
        return Int(records.pointee.count)
    }

    /// Records that did not fit a drain's buffer (never, when sized from the ring).
    public var droppedRecords: Int { Int(records.pointee.dropped) }
}
