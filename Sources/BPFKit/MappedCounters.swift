import CLibBPF
import CNetfenceShim
import Glibc
import HostKit

/// The `UInt64` values of a `BPF_F_MMAPABLE` array map, mapped into this process: read and
/// bumped without a call into the kernel (a map lookup costs a system call, about a
/// microsecond here). Every process that maps the map shares them.
public final class MappedCounters: @unchecked Sendable {
    /// Keeps the map alive while its values are mapped.
    public let map: BPFMap
    public let count: UInt32
    private let values: UnsafeMutablePointer<UInt64>

    /// Maps `map`'s values; it must be an array of `UInt64` made with `BPF_F_MMAPABLE`.
    public init(_ map: BPFMap) throws {
        let info = try map.info()
        guard info.type == .array, info.valueSize == 8, info.flags & UInt32(BPF_F_MMAPABLE) != 0 else {
            throw SystemError("map the counters of", "map \(info.id) (\(info.name)): not a mappable array of 64-bit values", errno: EINVAL)
        }
        guard let values = nf_counters_map(map.descriptor.rawValue, info.maxEntries) else {
            throw SystemError("map the counters of", "map \(info.id) (\(info.name))", errno: errno)
        }
        (self.map, count, self.values) = (map, info.maxEntries, values)
    }

    deinit { nf_counters_unmap(values, count) }

    /// The value at `index`; what was written before the bump that made it is seen after this read.
    public subscript(index: UInt32) -> UInt64 {
        precondition(index < count, "counter \(index) of \(count)")
        return nf_counter_read(values, index)
    }

    /// Adds one to the value at `index` once every write before it is seen; returns the value it had.
    @discardableResult
    public func bump(_ index: UInt32) -> UInt64 {
        precondition(index < count, "counter \(index) of \(count)")
        return nf_counter_bump(values, index)
    }
}
