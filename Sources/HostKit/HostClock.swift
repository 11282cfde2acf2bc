import Foundation
import Glibc

/// The host's clocks, read as nanoseconds, and their stamps as wall-clock dates.
public enum HostClock: Sendable {
    /// CLOCK_MONOTONIC: what the datapath stamps grants with; the epoch of the coarse one.
    case monotonic
    /// CLOCK_MONOTONIC_COARSE (the last tick): what the datapath stamps flows, hits and events with.
    case monotonicCoarse
    /// CLOCK_BOOTTIME: what the kernel stamps a program's load time with.
    case boot
    /// CLOCK_REALTIME: the wall clock.
    case realtime

    var id: clockid_t {
        switch self {
        case .monotonic: CLOCK_MONOTONIC
        case .monotonicCoarse: CLOCK_MONOTONIC_COARSE
        case .boot: CLOCK_BOOTTIME
        case .realtime: CLOCK_REALTIME
        }
    }

    /// Nanoseconds on this clock now.
    public var nanoseconds: UInt64 {
        var now = timespec()
        clock_gettime(id, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// The wall-clock date of one stamp of this clock (the offset read now).
    public func date(_ stamp: UInt64) -> Date { dates().date(stamp) }

    /// Converts many stamps of this clock to dates with one offset, read now: it holds until the wall clock is stepped.
    public func dates() -> StampDates {
        let offset = Double(HostClock.realtime.nanoseconds) / 1e9 - Double(nanoseconds) / 1e9
        return StampDates(offset: offset)
    }
}

/// Stamps of one clock as wall-clock dates (`HostClock.dates()`).
public struct StampDates: Sendable {
    let offset: Double

    public func date(_ stamp: UInt64) -> Date {
        Date(timeIntervalSince1970: offset + Double(stamp) / 1e9)
    }
}
