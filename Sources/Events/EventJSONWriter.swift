import DatapathModel
import Foundation
import Glibc
import Rendering

/// Writes events as JSON Lines, the `-o json` form of `ebpf events`: the
/// fields of ``DecodedEvent`` under their names, sorted, optional ones left out
/// when absent, times as `2026-11-23T13:59:01.123Z` (UTC, milliseconds
/// truncated) — what JSONEncoder would write, at a fraction of its cost.
/// Written by hand because the log must keep up with the datapath: JSONEncoder
/// and a date formatter cost ~10 µs an event (`netfence bench events`
/// measures this writer). Lines collect in the writer until ``flush(to:)``.
public final class EventJSONWriter {
    private let buffer: OutputBuffer
    /// `2026-11-23T13:59:01.` of the last second written: events come in bursts within one second.
    private var cachedSecond = Int.min
    private var cachedSecondText: [UInt8] = []

    public init(capacity: Int = 64 * 1024) {
        buffer = OutputBuffer(capacity: capacity)
    }

    /// Hands the lines written since the last flush to `output`; the writer starts empty again.
    public func flush(to output: (UnsafeRawBufferPointer) -> Void) {
        buffer.flush(to: output)
    }

    /// Appends `event` as one line.
    public func append(_ event: DecodedEvent) {
        // Bytes the line can take at most: the fixed part, six per string byte (\u00XX), 46 per address.
        let strings = (event.interface?.utf8.count ?? 0) + event.pod.utf8.count + (event.podNamespace?.utf8.count ?? 0) + event.policy.utf8.count
        buffer.write(atMost: 512 + 6 * strings) { line in
            line.put(#"{"bytes":"#)
            line.put(integer: event.bytes)
            line.put(#","destination":""#)
            line.put(address: event.destination)
            line.put(#"","destinationPort":"#)
            line.put(integer: event.destinationPort)
            line.put(#","direction":""#)
            line.put(event.direction.name)
            line.put(#"","family":""#)
            line.put(event.family.name)
            line.put(UInt8(ascii: "\""))
            if let identifier = event.icmpID {
                line.put(#","icmpID":"#)
                line.put(integer: identifier)
            }
            if let interface = event.interface {
                line.put(#","interface":""#)
                line.put(escaping: interface)
                line.put(UInt8(ascii: "\""))
            }
            line.put(#","pod":""#)
            line.put(escaping: event.pod)
            if let namespace = event.podNamespace {
                line.put(#"","podNamespace":""#)
                line.put(escaping: namespace)
            }
            line.put(#"","policy":""#)
            line.put(escaping: event.policy)
            line.put(#"","proto":""#)
            if let name = ProtocolName.known(event.protocolNumber) {
                line.put(name)
            } else {
                line.put("proto-")
                line.put(integer: event.protocolNumber)
            }
            line.put(#"","reason":""#)
            line.put(event.reason.name)
            line.put(#"","revision":"#)
            line.put(integer: event.revision)
            if let rule = event.rule {
                line.put(#","rule":"#)
                line.put(integer: rule)
            }
            line.put(#","source":""#)
            line.put(address: event.source)
            line.put(#"","sourcePort":"#)
            line.put(integer: event.sourcePort)
            line.put(#","tier":""#)
            line.put(event.tier.name)
            line.put(#"","time":""#)
            putTime(event.time, into: &line)
            line.put(#"","verdict":""#)
            line.put(event.verdict.name)
            line.put("\"}\n")
        }
    }

    /// Appends the `{"lost":N}` line.
    public func appendLost(_ lost: UInt64) {
        buffer.write(atMost: 64) { line in
            line.put(#"{"lost":"#)
            line.put(integer: lost)
            line.put("}\n")
        }
    }

    /// Appends the `{"suppressed":{"deny":N,...},"pod":...,"direction":...,"seconds":S}` line.
    public func appendSuppressed(_ report: SuppressedEvents) {
        buffer.write(atMost: 160 + 6 * report.pod.utf8.count) { line in
            line.put(#"{"direction":""#)
            line.put(report.direction.name)
            line.put(#"","pod":""#)
            line.put(escaping: report.pod)
            line.put(UInt8(ascii: "\""))
            if let seconds = report.seconds {
                line.put(#","seconds":"#)
                line.put(integer: UInt64(seconds.rounded()))
            }
            line.put(#","suppressed":{"#)
            var first = true
            for verdict in Verdict.allCases {
                guard let count = report.counts.byVerdict[verdict], count > 0 else { continue }
                if !first { line.put(UInt8(ascii: ",")) }
                first = false
                line.put(UInt8(ascii: "\""))
                line.put(verdict.name)
                line.put(#"":"#)
                line.put(integer: count)
            }
            line.put("}}\n")
        }
    }

    /// `2026-11-23T13:59:01.123Z`.
    private func putTime(_ date: Date, into line: inout OutputCursor) {
        let interval = date.timeIntervalSince1970
        let second = Int(interval.rounded(.down))
        if second != cachedSecond {
            var time = time_t(second)
            var parts = tm()
            gmtime_r(&time, &parts)
            cachedSecondText = Array(String(format: "%04d-%02d-%02dT%02d:%02d:%02d.", parts.tm_year + 1900, parts.tm_mon + 1,
                                            parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec).utf8)
            cachedSecond = second
        }
        cachedSecondText.withUnsafeBufferPointer { line.put($0) }
        let milliseconds = min(999, Int((interval - Double(second)) * 1000))
        line.put(UInt8(ascii: "0") + UInt8(milliseconds / 100))
        line.put(UInt8(ascii: "0") + UInt8(milliseconds / 10 % 10))
        line.put(UInt8(ascii: "0") + UInt8(milliseconds % 10))
        line.put(UInt8(ascii: "Z"))
    }
}
