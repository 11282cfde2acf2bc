import HostKit

/// A consumer of records in shared memory that visits them in place (no copy)
/// and gives their space back only after the visit, or, for a reader that must
/// first make what it read durable, when told (`read`, then `commit`). Its
/// position lives with the records, so the next reader process continues where
/// this one committed: nothing is read twice or skipped.
public protocol RecordRing: AnyObject {
    /// Visits every record ready after the last one visited, oldest first (bytes valid only
    /// during the call); returns how many. Their space stays taken until `commit`.
    func visitReady(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int
    /// Waits up to `milliseconds`, blocked in the kernel, for the producer to signal
    /// records; 0 (records, a timeout or a signal: visit to know) or -errno.
    func waitForRecords(milliseconds: Int32) -> Int32
    /// Gives back the space of every record visited so far.
    func commit()
}

extension RecordRing {
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
            let status = waitForRecords(milliseconds: Int32(min(max(timeout, 0), 3600) * 1000))
            if status < 0 { throw SystemError("wait on", "ring of records", errno: -status) }
            total = try visitReady(visit)
        }
        return total
    }
}
