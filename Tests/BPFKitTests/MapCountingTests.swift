import Glibc
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

    @Test func keyWalkAgreesWithBatches() throws {
        guard Privileges.require() else { return }
        let map = try BPFMap(type: .hash, name: "nf_test_walk", keySize: 4, valueSize: 8, maxEntries: 1_000)
        try fill(map, count: 777, valueSize: 8)
        let info = try map.info()
        #expect(try map.countByKeys(info) == 777)
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
