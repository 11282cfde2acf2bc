import Foundation
import Glibc

/// Converts the kernel's boot-time stamps (ns since boot, CLOCK_BOOTTIME) to wall-clock dates.
public enum BootClock {
    /// Nanoseconds on `clock` now.
    public static func nanoseconds(_ clock: clockid_t) -> UInt64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// The wall-clock date of a CLOCK_BOOTTIME stamp such as `bpf_prog_info.load_time`.
    public static func date(bootNanoseconds: UInt64) -> Date {
        let wall = Double(nanoseconds(CLOCK_REALTIME)) / 1e9
        let sinceBoot = Double(nanoseconds(CLOCK_BOOTTIME)) / 1e9
        return Date(timeIntervalSince1970: wall - sinceBoot + Double(bootNanoseconds) / 1e9)
    }
}
