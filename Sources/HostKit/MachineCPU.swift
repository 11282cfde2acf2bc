/// The CPU time of the whole machine so far (every CPU, from /proc/stat), to read how much of a
/// stretch of time the machine had to spare.
public struct MachineCPU: Sendable {
    /// Clock ticks spent idle (idle and iowait) and in all (stolen time included: a VM's CPUs may be shared).
    public let idleTicks: UInt64, totalTicks: UInt64

    /// Now (nil: /proc/stat unreadable).
    public static func now() -> MachineCPU? {
        guard let read = try? InputFile.read("/proc/stat", limit: 256) else { return nil }
        // "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is in user already).
        let fields = String(decoding: read.bytes, as: UTF8.self).prefix { $0 != "\n" }.split(separator: " ").dropFirst().prefix(8)
        let ticks = fields.compactMap { UInt64($0) }
        guard ticks.count == 8 else { return nil }
        return MachineCPU(idleTicks: ticks[3] + ticks[4], totalTicks: ticks.reduce(0, +))
    }

    /// The share of the machine's CPU time that was idle since `earlier` (0...1; nil when no tick passed).
    public func idleShare(since earlier: MachineCPU) -> Double? {
        guard totalTicks > earlier.totalTicks else { return nil }
        // iowait may step back (the kernel estimates it per CPU), so the idle ticks may too.
        let idle = idleTicks > earlier.idleTicks ? idleTicks - earlier.idleTicks : 0
        return min(1, Double(idle) / Double(totalTicks - earlier.totalTicks))
    }
}
