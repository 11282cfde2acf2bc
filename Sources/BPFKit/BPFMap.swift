import CLibBPF
import Foundation
import Glibc
import HostKit
import Synchronization

/// What the kernel reports about a map (`bpf_map_info`).
public struct MapInfo: Sendable, Equatable {
    public let id: UInt32
    public let type: MapType
    public let name: String
    public let keySize: UInt32
    public let valueSize: UInt32
    /// Capacity in entries (bytes for ring buffers).
    public let maxEntries: UInt32
    public let flags: UInt32
    public let btfID: UInt32
    /// BTF type ids of the key and the value in ``btfID`` (0: not described).
    public let btfKeyTypeID: UInt32
    public let btfValueTypeID: UInt32
}

/// A BPF map, owning one file descriptor to it.
public final class BPFMap: @unchecked Sendable {
    /// The descriptor that keeps the map alive while this object lives.
    public let descriptor: FileDescriptor
    /// A map's info never changes: read once, not on every lookup (by whichever thread is first).
    private let cachedInfo = Mutex<MapInfo?>(nil)

    /// Wraps a descriptor the caller hands over.
    public init(descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    /// Opens the map with kernel id `id` (`BPF_MAP_GET_FD_BY_ID`).
    public convenience init(id: UInt32) throws {
        let fd = try check(bpf_map_get_fd_by_id(id), "open map", "id \(id)")
        self.init(descriptor: FileDescriptor(owning: fd))
    }

    /// Creates a map (`BPF_MAP_CREATE`); used by tests and by the loader for inner maps.
    public convenience init(type: MapType, name: String, keySize: UInt32, valueSize: UInt32, maxEntries: UInt32, flags: UInt32 = 0) throws {
        let fd = create_map(type: type, name: name, keySize: keySize, valueSize: valueSize, maxEntries: maxEntries, flags: flags)
        try check(fd, "create \(type) map", name)
        self.init(descriptor: FileDescriptor(owning: fd))
    }

    /// The ids of every map on the host, ascending (`BPF_MAP_GET_NEXT_ID`).
    public static func allIDs() throws -> [UInt32] {
        try walkIDs(objectKind: "maps", next: bpf_map_get_next_id)
    }

    /// Reads `bpf_map_info` (once; it is fixed for the map's life).
    public func info() throws -> MapInfo {
        if let known = cachedInfo.withLock({ $0 }) { return known }
        var info = zeroed(bpf_map_info.self)
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try check(bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length), "read map info", "fd \(descriptor.rawValue)")
        let result = MapInfo(
            id: info.id, type: MapType(rawValue: info.type), name: string(fromCArray: info.name),
            keySize: info.key_size, valueSize: info.value_size, maxEntries: info.max_entries,
            flags: info.map_flags, btfID: info.btf_id, btfKeyTypeID: info.btf_key_type_id, btfValueTypeID: info.btf_value_type_id)
        cachedInfo.withLock { $0 = result }
        return result
    }

    /// The kernel memory the map is charged (`memlock` of its fdinfo: what it uses now on kernels
    /// that count usage, 6.4 and later; nil when the kernel does not say).
    public func memoryBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/fdinfo/\(descriptor.rawValue)", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("memlock:") {
            return Int(line.dropFirst("memlock:".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// Writes one entry (`BPF_MAP_UPDATE_ELEM`); key and value must have the map's sizes.
    public func update(key: [UInt8], value: [UInt8], flags: UInt64 = 0) throws {
        let result = key.withUnsafeBytes { k in value.withUnsafeBytes { v in
            bpf_map_update_elem(descriptor.rawValue, k.baseAddress, v.baseAddress, flags)
        } }
        try check(result, "update entry of map", "fd \(descriptor.rawValue)")
    }

    /// The value stored under `key`, or nil when there is none (`BPF_MAP_LOOKUP_ELEM`).
    /// Per-CPU maps return one 8-aligned slot per possible CPU.
    public func lookup(key: [UInt8]) throws -> [UInt8]? {
        let info = try info()
        var value = [UInt8](repeating: 0, count: valueStride(info))
        let result = key.withUnsafeBytes { k in value.withUnsafeMutableBytes { v in
            bpf_map_lookup_elem(descriptor.rawValue, k.baseAddress, v.baseAddress)
        } }
        if result == -ENOENT { return nil }
        try check(result, "look up entry of map", "id \(info.id) (\(info.name))")
        return value
    }

    /// Removes the entry under `key`; returns whether there was one (`BPF_MAP_DELETE_ELEM`).
    @discardableResult
    public func delete(key: [UInt8]) throws -> Bool {
        let result = key.withUnsafeBytes { bpf_map_delete_elem(descriptor.rawValue, $0.baseAddress) }
        if result == -ENOENT { return false }
        try check(result, "delete entry of map", "fd \(descriptor.rawValue)")
        return true
    }

    /// Every key, walked with `BPF_MAP_GET_NEXT_KEY` (entries removed meanwhile are skipped).
    public func keys() throws -> [[UInt8]] {
        let info = try info()
        var keys: [[UInt8]] = []
        var next = [UInt8](repeating: 0, count: Int(info.keySize))
        while true {
            let previous = keys.last
            let result = next.withUnsafeMutableBytes { n in
                if let previous {
                    return previous.withUnsafeBytes { bpf_map_get_next_key(descriptor.rawValue, $0.baseAddress, n.baseAddress) }
                }
                return bpf_map_get_next_key(descriptor.rawValue, nil, n.baseAddress)
            }
            if result == -ENOENT { return keys }
            try check(result, "walk keys of map", "id \(info.id) (\(info.name))")
            keys.append(next)
        }
    }

    /// Every entry, read in batches: a syscall per few thousand entries, where `keys()` and a lookup
    /// take two per entry (and each next-key step of a sparse hash scans its buckets from the last key).
    public func entries() throws -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        try forEachBatch { batch in
            for entry in 0..<batch.count { result.append((Array(batch.key(entry)), Array(batch.value(entry)))) }
        }
        return result
    }

    /// Whether the map holds no entry (one `BPF_MAP_GET_NEXT_KEY`).
    public var isEmpty: Bool {
        get throws {
            var first = [UInt8](repeating: 0, count: Int(try info().keySize))
            let result = first.withUnsafeMutableBytes { bpf_map_get_next_key(descriptor.rawValue, nil, $0.baseAddress) }
            if result == -ENOENT { return true }
            try check(result, "walk keys of map", "fd \(descriptor.rawValue)")
            return false
        }
    }

    /// The keys `include` picks, read in batches (a syscall per few thousand entries, where `keys()`
    /// takes one per entry): what a flush of one pod's entries out of a large table reads.
    public func keys(where include: (UnsafeRawBufferPointer) -> Bool) throws -> [[UInt8]] {
        var picked: [[UInt8]] = []
        try forEachBatch { batch in
            for index in 0..<batch.count where include(batch.key(index)) { picked.append(Array(batch.key(index))) }
        }
        return picked
    }

    /// Stores `inner`'s descriptor under `key` of this map-of-maps: one update
    /// that swaps what every later lookup sees.
    public func setInner(key: [UInt8], to inner: BPFMap) throws {
        try update(key: key, value: withUnsafeBytes(of: UInt32(bitPattern: inner.descriptor.rawValue)) { Array($0) })
    }

    /// Stores each inner map's descriptor under its key in one `BPF_MAP_UPDATE_BATCH`: from 6.8 the
    /// kernel waits for one RCU grace period after the batch, where an update per entry waits one
    /// each (before 6.8 it waits for none after a batch).
    public func setInners(_ entries: [(key: [UInt8], inner: BPFMap)]) throws {
        guard let keySize = entries.first?.key.count else { return }
        let keys = entries.flatMap(\.key)
        let values = entries.flatMap { withUnsafeBytes(of: UInt32(bitPattern: $0.inner.descriptor.rawValue)) { Array($0) } }
        precondition(keys.count == keySize * entries.count, "keys of one size")
        var count = UInt32(entries.count)
        let result = keys.withUnsafeBytes { k in values.withUnsafeBytes { v in
            bpf_map_update_batch(descriptor.rawValue, k.baseAddress, v.baseAddress, &count, nil)
        } }
        try check(result, "update entries of map", "fd \(descriptor.rawValue) (\(count) of \(entries.count) written)")
        withExtendedLifetime(entries) {}
    }

    /// Pins the map at `path` on bpffs (`BPF_OBJ_PIN`).
    public func pin(at path: String) throws {
        try check(bpf_obj_pin(descriptor.rawValue, path), "pin map to", path)
    }

    /// How many entries the map holds now, or nil for types without keys to count
    /// (ring buffers, queues, bloom filters). Uses batch lookups in chunks of
    /// `batchSize` where the kernel supports them, else walks key by key.
    public func countEntries(batchSize: Int = 4096) throws -> Int? {
        let info = try info()
        if info.type.hasNoKeys { return nil }
        if info.type.isPlainArray { return Int(info.maxEntries) }
        var total = 0
        try forEachBatch(batchSize: batchSize) { batch in total += batch.count }
        return total
    }

    /// Entries read in one batch: `count` keys and values laid out back to back,
    /// valid only during the call that receives them.
    public struct Batch {
        public let count: Int
        public let keys: UnsafeRawBufferPointer
        public let values: UnsafeRawBufferPointer
        /// Bytes of one key, and of one value as read (per-CPU: a slot per possible CPU).
        public let keySize: Int
        public let valueStride: Int

        public func key(_ index: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: keys[(index * keySize)..<((index + 1) * keySize)])
        }

        public func value(_ index: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: values[(index * valueStride)..<((index + 1) * valueStride)])
        }
    }

    /// Reads every entry in bounded chunks, handing each chunk to `body` as it
    /// arrives, so memory stays flat however large the map. Batch lookups of
    /// `batchSize` entries where the kernel has them; else key by key, where an
    /// entry that vanishes between its key and its lookup is skipped, never torn.
    public func forEachBatch(batchSize: Int = 4096, _ body: (Batch) throws -> Void) throws {
        let info = try info()
        guard !info.type.hasNoKeys else {
            throw SystemError("read entries of map", "id \(info.id) (\(info.name), a \(info.type) map)", errno: EINVAL)
        }
        if try forEachBatchByLookups(info, batchSize: max(1, batchSize), body) { return }
        try forEachBatchByKeys(info, batchSize: max(1, batchSize), body)
    }

    /// Bytes one lookup writes per entry: per-CPU maps hold one 8-aligned slot per possible CPU.
    func valueStride(_ info: MapInfo) -> Int {
        guard info.type.isPerCPU else { return Int(info.valueSize) }
        return (Int(info.valueSize) + 7) / 8 * 8 * Self.possibleCPUs
    }

    /// CPUs a per-CPU value has a slot for.
    public static let possibleCPUs = Int(max(1, libbpf_num_possible_cpus()))

    /// false when this map type has no batch support (ENOTSUPP/EINVAL on the first call).
    /// The key and value buffers are left uninitialized: the kernel writes only the entries it
    /// returns, so a walk of a large, nearly empty table touches a page or two instead of zeroing
    /// megabytes (thousands of page faults in a short-lived process).
    private func forEachBatchByLookups(_ info: MapInfo, batchSize initialSize: Int, _ body: (Batch) throws -> Void) throws -> Bool {
        let tokenSize = max(Int(info.keySize), 8)
        var inToken = [UInt8](repeating: 0, count: tokenSize)
        var outToken = [UInt8](repeating: 0, count: tokenSize)
        let keySize = Int(info.keySize), stride = valueStride(info)
        var batchSize = initialSize
        var keys = UnsafeMutableRawBufferPointer.allocate(byteCount: batchSize * keySize, alignment: 8)
        var values = UnsafeMutableRawBufferPointer.allocate(byteCount: batchSize * stride, alignment: 8)
        defer { keys.deallocate(); values.deallocate() }
        var first = true
        while true {
            var count = UInt32(batchSize)
            let result = inToken.withUnsafeMutableBytes { inBytes in
                outToken.withUnsafeMutableBytes { outBytes in
                    bpf_map_lookup_batch(descriptor.rawValue, first ? nil : inBytes.baseAddress,
                                         outBytes.baseAddress, keys.baseAddress, values.baseAddress, &count, nil)
                }
            }
            let error = -result
            if error == 0 || error == ENOENT, count > 0 {  // the last batch (ENOENT) may still hold entries
                try body(Batch(count: Int(count), keys: UnsafeRawBufferPointer(rebasing: keys[..<(Int(count) * keySize)]),
                               values: UnsafeRawBufferPointer(rebasing: values[..<(Int(count) * stride)]), keySize: keySize, valueStride: stride))
            }
            switch error {
            case 0:
                swap(&inToken, &outToken)
                first = false
            case ENOENT:
                return true
            case ENOSPC where batchSize < 1 << 20:
                batchSize *= 2  // a hash bucket was larger than the batch
                keys.deallocate()
                values.deallocate()
                keys = UnsafeMutableRawBufferPointer.allocate(byteCount: batchSize * keySize, alignment: 8)
                values = UnsafeMutableRawBufferPointer.allocate(byteCount: batchSize * stride, alignment: 8)
            case Errno.kernelNotSupported where first, EOPNOTSUPP where first, EINVAL where first:
                return false
            default:
                try check(result, "batch lookup of map", "id \(info.id) (\(info.name))")
            }
        }
    }

    /// The walk for map types without batch lookups: next key, then its value.
    func forEachBatchByKeys(_ info: MapInfo, batchSize: Int, _ body: (Batch) throws -> Void) throws {
        let keySize = Int(info.keySize), stride = valueStride(info)
        var keys = [UInt8](repeating: 0, count: batchSize * keySize)
        var values = [UInt8](repeating: 0, count: batchSize * stride)
        var previous: [UInt8]?
        var next = [UInt8](repeating: 0, count: keySize)
        var value = [UInt8](repeating: 0, count: stride)
        var count = 0
        func flush() throws {
            guard count > 0 else { return }
            try keys.withUnsafeBytes { k in
                try values.withUnsafeBytes { v in try body(Batch(count: count, keys: k, values: v, keySize: keySize, valueStride: stride)) }
            }
            count = 0
        }
        while true {
            let result = next.withUnsafeMutableBytes { n in
                guard let previous else { return bpf_map_get_next_key(descriptor.rawValue, nil, n.baseAddress) }
                return previous.withUnsafeBytes { bpf_map_get_next_key(descriptor.rawValue, $0.baseAddress, n.baseAddress) }
            }
            if result == -ENOENT { break }
            try check(result, "walk keys of map", "id \(info.id) (\(info.name))")
            previous = next
            let found = next.withUnsafeBytes { k in value.withUnsafeMutableBytes { v in
                bpf_map_lookup_elem(descriptor.rawValue, k.baseAddress, v.baseAddress)
            } }
            if found == -ENOENT { continue }  // removed since its key was read
            try check(found, "look up entry of map", "id \(info.id) (\(info.name))")
            keys.replaceSubrange((count * keySize)..<((count + 1) * keySize), with: next)
            values.replaceSubrange((count * stride)..<((count + 1) * stride), with: value)
            count += 1
            if count == batchSize { try flush() }
        }
        try flush()
    }
}

private func create_map(type: MapType, name: String, keySize: UInt32, valueSize: UInt32, maxEntries: UInt32, flags: UInt32) -> Int32 {
    withZeroedPointer(to: bpf_map_create_opts.self) { options in
        options.pointee.sz = MemoryLayout<bpf_map_create_opts>.size
        options.pointee.map_flags = flags
        return bpf_map_create(bpf_map_type(rawValue: type.rawValue), name, keySize, valueSize, maxEntries, options)
    }
}

/// Map creation flags (`BPF_F_*` in <linux/bpf.h>).
public enum MapFlags {
    /// Allocate entries on insert; LPM tries require it.
    public static let noPreallocate = UInt32(BPF_F_NO_PREALLOC)
}

/// How `BPFMap.update` writes an entry.
public enum UpdateFlags {
    /// Create or replace.
    public static let any = UInt64(BPF_ANY)
    /// Create only: an existing entry fails the update with EEXIST.
    public static let noExist = UInt64(BPF_NOEXIST)
}
