import BPFKit
import Datapath
import DatapathModel
import Foundation
import HostKit
import Loader
import PolicyInput

/// What a reader of the verdict log gets: events, and losses it must not hide.
public enum EventItem: Sendable {
    case event(DecodedEvent)
    /// Events the datapath could not write (the ring was full) since the last report.
    case lost(UInt64)
}

/// The one consumer of the datapath's event ring: drains records, decodes and
/// attributes them, and reports lost events (the datapath's counter, minus what
/// was reported before, kept in bpffs so no loss goes unreported).
public final class EventStream {
    private let loader: Loader
    private let reader: RingBufferReader
    /// The datapath's CLOCK_MONOTONIC stamps as wall-clock dates.
    private let clock = HostClock.monotonic.dates()
    private var attribution: Attribution
    private var lastLossCheck = Date.distantPast

    public init(loader: Loader) throws {
        self.loader = loader
        reader = try loader.datapath.eventReader()
        attribution = try loader.attribution()
    }

    /// The longest `namespace/name` of the pods attached when the stream began, for table widths.
    public var longestPodName: Int { attribution.longestPodName }

    /// Everything ready now, item by item: a loss report first (at most once
    /// per `lossInterval`), then events, oldest first. With `wait`, when nothing
    /// is ready it waits up to that many seconds for the first event.
    public func drain(lossInterval: TimeInterval = 1, waitingUpTo wait: Double? = nil, _ visit: (EventItem) throws -> Void) throws {
        if Date().timeIntervalSince(lastLossCheck) >= lossInterval {
            lastLossCheck = Date()
            try loader.reportLostEvents { try visit(.lost($0)) }
        }
        var refreshed = false
        try reader.drain(waitingUpTo: wait) { record in
            guard let event = VerdictEvent.decode(record) else { return }
            if !refreshed && !attribution.knows(event) {
                attribution = try loader.attribution()  // a pod or object newer than our view
                refreshed = true
            }
            try visit(.event(attribution.decode(event, monotonicToWall: clock.date)))
        }
    }
}
