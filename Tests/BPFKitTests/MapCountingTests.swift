import Glibc
import HostKit
import Testing
import TestSupport

@testable import BPFKit

/// Fills `map` with keys 0..<count (u32 keys, zero values of the map's value size).
func fill(_ map: BPFMap, count: Int, valueSize: Int) throws {
    for key in 0..<UInt32(count) {
        try map.update(key: withUnsafeBytes(of: key) { Array($0) }, value: [UInt8](repeating: 0, count: valueSize))
    }
}

@Suite struct MapCountingTests {
    @Test(arguments: [MapType.hash, .lruHash, .percpuHash, .lruPercpuHash])
    func batchCountingFindsEveryEntryOfHashMaps(type: MapType) throws {
        guard Privileges.require() else { return }
        let map = try BPFMap(type: type, name: "nf_test_count", keySize: 4, valueSize: 12, maxEntries: 10_000)
        try fill(map, count: 4_321, valueSize: 12)
        #expect(try map.countEntries() == 4_321)
        // Small batches: many round trips, and ENOSPC when a bucket outgrows the batch.
        #expect(try map.countEntries(batchSize: 7) == 4_321)
        #expect(try map.countEntries(batchSize: 1) == 4_321)
    }

    /// Both ways of reading return every entry with its value, per-CPU slots included.
    @Test(arguments: [MapType.hash, .percpuHash])
    func keyWalkAgreesWithBatches(type: MapType) throws {
        guard Privileges.require() else { return }
        let map = try BPFMap(type: type, name: "nf_test_walk", keySize: 4, valueSize: 8, maxEntries: 1_000)
        let slots = type == .percpuHash ? BPFMap.possibleCPUs : 1  // an update writes every CPU's slot
        for key in 0..<UInt32(777) {
            let value = (0..<slots).flatMap { cpu in withUnsafeBytes(of: UInt64(key) * 3 + UInt64(cpu)) { Array($0) } }
            try map.update(key: withUnsafeBytes(of: key) { Array($0) }, value: value)
        }
        func collect(_ batch: BPFMap.Batch, into entries: inout [UInt32: [UInt64]]) {
            for index in 0..<batch.count {
                let value = batch.value(index)
                entries[batch.key(index).loadUnaligned(as: UInt32.self)] = stride(from: 0, to: value.count, by: 8).map {
                    value.loadUnaligned(fromByteOffset: $0, as: UInt64.self)
                }
            }
        }
        var batched: [UInt32: [UInt64]] = [:], walked: [UInt32: [UInt64]] = [:], readAhead: [UInt32: [UInt64]] = [:]
        try map.forEachBatch(batchSize: 5) { collect($0, into: &batched) }
        try map.forEachBatchByKeys(try map.info(), batchSize: 5) { collect($0, into: &walked) }
        try map.forEachBatchReadingAhead(batchSize: 5) { collect($0, into: &readAhead) }
        #expect(batched.count == 777)
        #expect(batched == walked)
        #expect(batched == readAhead)
        #expect(batched[100] == (0..<slots).map { 300 + UInt64($0) })
    }

    /// The caller's error ends a read-ahead walk at once: the reading thread stops, nothing hangs.
    @Test func readAheadStopsWhenTheCallerFails() throws {
        guard Privileges.require() else { return }
        struct Enough: Error {}
        let map = try BPFMap(type: .hash, name: "nf_test_stop", keySize: 4, valueSize: 8, maxEntries: 10_000)
        try fill(map, count: 10_000, valueSize: 8)
        var batches = 0
        #expect(throws: Enough.self) {
            try map.forEachBatchReadingAhead(batchSize: 10) { _ in
                batches += 1
                if batches == 3 { throw Enough() }
            }
        }
        #expect(batches == 3)
        let ring = try BPFMap(type: .ringbuf, name: "nf_test_ring", keySize: 0, valueSize: 0, maxEntries: 4096)
        #expect(throws: SystemError.self) { try ring.forEachBatchReadingAhead { _ in } }
    }

    @Test func anLPMTrieIsCounted() throws {
        guard Privileges.require() else { return }
        let map = try BPFMap(type: .lpmTrie, name: "nf_test_lpm", keySize: 8, valueSize: 4, maxEntries: 100, flags: MapFlags.noPreallocate)
        for octet in 0..<UInt8(50) {
            try map.update(key: [24, 0, 0, 0, 198, 18, octet, 0], value: [1, 0, 0, 0])
        }
        #expect(try map.countEntries() == 50)
    }

    @Test func arraysAreFullAndRingBuffersHaveNoCount() throws {
        guard Privileges.require() else { return }
        let array = try BPFMap(type: .percpuArray, name: "nf_test_arr", keySize: 4, valueSize: 8, maxEntries: 64)
        #expect(try array.countEntries() == 64)
        let ring = try BPFMap(type: .ringbuf, name: "nf_test_ring", keySize: 0, valueSize: 0, maxEntries: 4096)
        #expect(try ring.countEntries() == nil)
        #expect(try ring.info().type.description == "ringbuf")
    }

    @Test func anEmptyMapCountsZero() throws {
        guard Privileges.require() else { return }
        let map = try BPFMap(type: .hash, name: "nf_test_empty", keySize: 4, valueSize: 4, maxEntries: 16)
        #expect(try map.countEntries() == 0)
    }
}
