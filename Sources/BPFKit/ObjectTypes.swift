/// A BPF program type, named as bpftool names it (`sched_cls`, never `3`).
public struct ProgramType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `sched_cls`: tc classifiers, the type of netfence's programs.
    public static let schedCls = ProgramType(rawValue: 3)

    /// bpftool's name for the type, or `unknown(N)` for a type newer than this table.
    public var description: String {
        let index = Int(rawValue)
        return index < Self.names.count ? Self.names[index] : "unknown(\(rawValue))"
    }

    /// In kernel order (enum bpf_prog_type in <linux/bpf.h>).
    static let names = [
        "unspec", "socket_filter", "kprobe", "sched_cls", "sched_act", "tracepoint", "xdp",
        "perf_event", "cgroup_skb", "cgroup_sock", "lwt_in", "lwt_out", "lwt_xmit", "sock_ops",
        "sk_skb", "cgroup_device", "sk_msg", "raw_tracepoint", "cgroup_sock_addr", "lwt_seg6local",
        "lirc_mode2", "sk_reuseport", "flow_dissector", "cgroup_sysctl", "raw_tracepoint_writable",
        "cgroup_sockopt", "tracing", "struct_ops", "ext", "lsm", "sk_lookup", "syscall", "netfilter",
    ]
}

/// A BPF map type, named as bpftool names it (`lru_hash`, `lpm_trie`, …).
public struct MapType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let hash = MapType(rawValue: 1)
    public static let array = MapType(rawValue: 2)
    public static let progArray = MapType(rawValue: 3)
    public static let perfEventArray = MapType(rawValue: 4)
    public static let percpuHash = MapType(rawValue: 5)
    public static let percpuArray = MapType(rawValue: 6)
    public static let lruHash = MapType(rawValue: 9)
    public static let lruPercpuHash = MapType(rawValue: 10)
    public static let lpmTrie = MapType(rawValue: 11)
    public static let arrayOfMaps = MapType(rawValue: 12)
    public static let hashOfMaps = MapType(rawValue: 13)
    public static let queue = MapType(rawValue: 22)
    public static let stack = MapType(rawValue: 23)
    public static let ringbuf = MapType(rawValue: 27)
    public static let bloomFilter = MapType(rawValue: 30)
    public static let userRingbuf = MapType(rawValue: 31)

    /// Arrays whose every index exists from creation: they are always "full".
    public var isPreallocatedArray: Bool { self == .array || self == .percpuArray }

    /// bpftool's name for the type, or `unknown(N)` for a type newer than this table.
    public var description: String {
        let index = Int(rawValue)
        return index < Self.names.count ? Self.names[index] : "unknown(\(rawValue))"
    }

    /// Values are stored once per possible CPU.
    public var isPerCPU: Bool {
        [Self.percpuHash, Self.percpuArray, Self.lruPercpuHash, MapType(rawValue: 21)].contains(self)
    }

    /// Every index below max_entries exists, so the count is the capacity.
    public var isPlainArray: Bool { self == Self.array || self == Self.percpuArray }

    /// Types whose entries have no keys to walk (rings, queues, filters).
    public var hasNoKeys: Bool {
        [Self.queue, Self.stack, Self.ringbuf, Self.bloomFilter, Self.userRingbuf, MapType(rawValue: 26)].contains(self)
    }

    /// In kernel order (enum bpf_map_type in <linux/bpf.h>).
    static let names = [
        "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array",
        "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps",
        "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage",
        "reuseport_sockarray", "percpu_cgroup_storage", "queue", "stack", "sk_storage", "devmap_hash",
        "struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter", "user_ringbuf",
        "cgrp_storage", "arena",
    ]
}
