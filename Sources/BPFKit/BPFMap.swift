import CLibBPF
import Glibc

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
}

/// A BPF map, owning one file descriptor to it.
public final class BPFMap: @unchecked Sendable {
    /// The descriptor that keeps the map alive while this object lives.
    public let descriptor: FileDescriptor
    /// A map's info never changes: read once, not on every lookup.
    private var cachedInfo: MapInfo?

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
        if let cachedInfo { return cachedInfo }
        var info = zeroed(bpf_map_info.self)
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try check(bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length), "read map info", "fd \(descriptor.rawValue)")
        let result = MapInfo(
            id: info.id, type: MapType(rawValue: info.type), name: string(fromCArray: info.name),
            keySize: info.key_size, valueSize: info.value_size, maxEntries: info.max_entries,
            flags: info.map_flags, btfID: info.btf_id)
        cachedInfo = result
        return result
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

    /// Stores `inner`'s descriptor under `key` of this map-of-maps: one update
    /// that swaps what every later lookup sees.
    public func setInner(key: [UInt8], to inner: BPFMap) throws {
        try update(key: key, value: withUnsafeBytes(of: UInt32(bitPattern: inner.descriptor.rawValue)) { Array($0) })
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
        if let counted = try countByBatches(info, batchSize: max(1, batchSize)) { return counted }
        return try countByKeys(info)
    }

    /// Bytes one lookup writes per entry: per-CPU maps hold one 8-aligned slot per possible CPU.
    func valueStride(_ info: MapInfo) -> Int {
        guard info.type.isPerCPU else { return Int(info.valueSize) }
        return (Int(info.valueSize) + 7) / 8 * 8 * Int(max(1, libbpf_num_possible_cpus()))
    }

    /// nil when this map type has no batch support (ENOTSUPP/EINVAL on the first call).
    private func countByBatches(_ info: MapInfo, batchSize initialSize: Int) throws -> Int? {
        let tokenSize = max(Int(info.keySize), 8)
        var inToken = [UInt8](repeating: 0, count: tokenSize)
        var outToken = [UInt8](repeating: 0, count: tokenSize)
        var batchSize = initialSize
        var total = 0
        var first = true
        while true {
            var keys = [UInt8](repeating: 0, count: batchSize * Int(info.keySize))
            var values = [UInt8](repeating: 0, count: batchSize * valueStride(info))
            var count = UInt32(batchSize)
            let result = inToken.withUnsafeMutableBytes { inBytes in
                outToken.withUnsafeMutableBytes { outBytes in
                    keys.withUnsafeMutableBytes { k in
                        values.withUnsafeMutableBytes { v in
                            bpf_map_lookup_batch(descriptor.rawValue, first ? nil : inBytes.baseAddress,
                                                 outBytes.baseAddress, k.baseAddress, v.baseAddress, &count, nil)
                        }
                    }
                }
            }
            switch -result {
            case 0:
                total += Int(count)
                inToken = outToken
                first = false
            case ENOENT:
                return total + Int(count)  // the last batch may still hold entries
            case ENOSPC where batchSize < 1 << 20:
                batchSize *= 2  // a hash bucket was larger than the batch
            case Errno.kernelNotSupported where first, EOPNOTSUPP where first, EINVAL where first:
                return nil
            default:
                try check(result, "batch lookup of map", "id \(info.id) (\(info.name))")
            }
        }
    }

    func countByKeys(_ info: MapInfo) throws -> Int {
        try keys().count
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
