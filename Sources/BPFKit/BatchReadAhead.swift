import Foundation

extension BPFMap {
    /// As ``forEachBatch(batchSize:_:)``, with the kernel's copying on a second thread:
    /// it reads the next batches while `body` handles this one. A dump spends about as
    /// long formatting a batch as the kernel spends copying it; overlapped, the walk
    /// takes the longer of the two instead of their sum. Errors of either side end it.
    public func forEachBatchReadingAhead(batchSize: Int = 4096, _ body: (Batch) throws -> Void) throws {
        let handoff = BatchHandoff(depth: 3)
        let reader = Thread { [self] in
            do {
                try forEachBatch(batchSize: batchSize) { batch in
                    guard let slot = handoff.takeFree() else { throw BatchHandoff.Stopped() }
                    slot.copy(batch)
                    handoff.publish(slot)
                }
                handoff.finish(nil)
            } catch {
                handoff.finish(error)
            }
        }
        reader.start()
        defer { handoff.stopAndWait() }
        while let slot = try handoff.next() {
            try slot.withBatch(body)
            handoff.recycle(slot)
        }
    }
}

/// The bounded queue between the reading thread and the caller's: `depth` slots
/// go round, so memory stays at `depth` batches however large the map.
private final class BatchHandoff: @unchecked Sendable {
    struct Stopped: Error {}

    /// One batch's bytes, copied out of the reader's buffers.
    final class Slot {
        var keys: [UInt8] = [], values: [UInt8] = []
        var count = 0, keySize = 0, valueStride = 0

        func copy(_ batch: BPFMap.Batch) {
            count = batch.count
            keySize = batch.keySize
            valueStride = batch.valueStride
            keys.removeAll(keepingCapacity: true)
            keys.append(contentsOf: batch.keys.prefix(count * keySize))
            values.removeAll(keepingCapacity: true)
            values.append(contentsOf: batch.values.prefix(count * valueStride))
        }

        func withBatch(_ body: (BPFMap.Batch) throws -> Void) throws {
            try keys.withUnsafeBytes { k in
                try values.withUnsafeBytes { v in
                    try body(BPFMap.Batch(count: count, keys: k, values: v, keySize: keySize, valueStride: valueStride))
                }
            }
        }
    }

    private let condition = NSCondition()
    private var free: [Slot]
    private var ready: [Slot] = []
    private var finished = false, stopped = false
    private var failure: Error?

    init(depth: Int) { free = (0..<depth).map { _ in Slot() } }

    /// Reader: a slot to fill, or nil once the caller stopped.
    func takeFree() -> Slot? {
        condition.lock()
        defer { condition.unlock() }
        while free.isEmpty, !stopped { condition.wait() }
        return stopped ? nil : free.removeLast()
    }

    func publish(_ slot: Slot) {
        condition.lock()
        ready.append(slot)
        condition.broadcast()
        condition.unlock()
    }

    /// Reader: the walk ended, with its error if it failed.
    func finish(_ error: Error?) {
        condition.lock()
        finished = true
        if !(error is Stopped) { failure = error }
        condition.broadcast()
        condition.unlock()
    }

    /// Caller: the next batch in order, nil at the end; rethrows the reader's error.
    func next() throws -> Slot? {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty, !finished { condition.wait() }
        if !ready.isEmpty { return ready.removeFirst() }
        if let failure { throw failure }
        return nil
    }

    func recycle(_ slot: Slot) {
        condition.lock()
        free.append(slot)
        condition.broadcast()
        condition.unlock()
    }

    /// Caller, on the way out (also after an error): stops the reader and waits for it.
    func stopAndWait() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }
}
