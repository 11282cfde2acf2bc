import CLibBPF

/// A BPF program type, named as bpftool names it (`sched_cls`, never `3`).
public struct ProgramType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `sched_cls`: tc classifiers, the type of netfence's programs.
    public static let schedCls = ProgramType(rawValue: BPF_PROG_TYPE_SCHED_CLS.rawValue)

    /// libbpf's name for the type (`libbpf_bpf_prog_type_str`, the name bpftool prints), or
    /// `unknown(N)` for a type newer than the system's libbpf.
    public var description: String {
        libbpf_bpf_prog_type_str(bpf_prog_type(rawValue)).map { String(cString: $0) } ?? "unknown(\(rawValue))"
    }
}

/// A BPF map type, named as bpftool names it (`lru_hash`, `lpm_trie`, …).
public struct MapType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let hash = MapType(rawValue: BPF_MAP_TYPE_HASH.rawValue)
    public static let array = MapType(rawValue: BPF_MAP_TYPE_ARRAY.rawValue)
    public static let progArray = MapType(rawValue: BPF_MAP_TYPE_PROG_ARRAY.rawValue)
    public static let perfEventArray = MapType(rawValue: BPF_MAP_TYPE_PERF_EVENT_ARRAY.rawValue)
    public static let percpuHash = MapType(rawValue: BPF_MAP_TYPE_PERCPU_HASH.rawValue)
    public static let percpuArray = MapType(rawValue: BPF_MAP_TYPE_PERCPU_ARRAY.rawValue)
    public static let lruHash = MapType(rawValue: BPF_MAP_TYPE_LRU_HASH.rawValue)
    public static let lruPercpuHash = MapType(rawValue: BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue)
    public static let lpmTrie = MapType(rawValue: BPF_MAP_TYPE_LPM_TRIE.rawValue)
    public static let arrayOfMaps = MapType(rawValue: BPF_MAP_TYPE_ARRAY_OF_MAPS.rawValue)
    public static let hashOfMaps = MapType(rawValue: BPF_MAP_TYPE_HASH_OF_MAPS.rawValue)
    public static let queue = MapType(rawValue: BPF_MAP_TYPE_QUEUE.rawValue)
    public static let stack = MapType(rawValue: BPF_MAP_TYPE_STACK.rawValue)
    public static let ringbuf = MapType(rawValue: BPF_MAP_TYPE_RINGBUF.rawValue)
    public static let bloomFilter = MapType(rawValue: BPF_MAP_TYPE_BLOOM_FILTER.rawValue)
    public static let userRingbuf = MapType(rawValue: BPF_MAP_TYPE_USER_RINGBUF.rawValue)
    public static let percpuCgroupStorage = MapType(rawValue: BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE.rawValue)
    public static let structOps = MapType(rawValue: BPF_MAP_TYPE_STRUCT_OPS.rawValue)

    /// Arrays whose every index exists from creation: they are always "full".
    public var isPreallocatedArray: Bool { self == .array || self == .percpuArray }

    /// libbpf's name for the type (`libbpf_bpf_map_type_str`, the name bpftool prints), or
    /// `unknown(N)` for a type newer than the system's libbpf.
    public var description: String {
        libbpf_bpf_map_type_str(bpf_map_type(rawValue)).map { String(cString: $0) } ?? "unknown(\(rawValue))"
    }

    /// Values are stored once per possible CPU.
    public var isPerCPU: Bool {
        [Self.percpuHash, Self.percpuArray, Self.lruPercpuHash, Self.percpuCgroupStorage].contains(self)
    }

    /// Every index below max_entries exists, so the count is the capacity.
    public var isPlainArray: Bool { self == Self.array || self == Self.percpuArray }

    /// Types whose entries have no keys to walk (rings, queues, filters).
    public var hasNoKeys: Bool {
        [Self.queue, Self.stack, Self.ringbuf, Self.bloomFilter, Self.userRingbuf, Self.structOps].contains(self)
    }
}
