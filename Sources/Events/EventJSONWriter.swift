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
    /// The fields written, one bit per `EventField` (all by default).
    private let fields: UInt32
    /// `2026-11-23T13:59:01.` of the last second written: events come in bursts within one second.
    private var cachedSecond = Int.min
    private var cachedSecondText: [UInt8] = []

    /// A writer of `fields` (all when nil): a shipper that pays per byte keeps what it needs.
    public init(capacity: Int = 64 * 1024, fields: Set<EventField>? = nil) {
        buffer = OutputBuffer(capacity: capacity)
        self.fields = (fields ?? Set(EventField.allCases)).reduce(0) { $0 | $1.bit }
        let keys = EventField.allCases.map { Array(",\"\($0)\":".utf8) }
        keyBytes = .allocate(capacity: keys.reduce(0) { $0 + $1.count })
        _ = keyBytes.initialize(from: keys.joined())
        keyStarts = keys.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        namesInSlot.initialize(repeating: nil, count: Self.namesSlots)
        namesCount.initialize(repeating: 0, count: Self.namesSlots)
    }

    /// Hands the lines written since the last flush to `output`; the writer starts empty again.
    public func flush(to output: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try buffer.flush(to: output)
    }

    /// `,"name":` of every field, back to back, and where each starts (by raw value; one more at the end):
    /// a key is one copy (a line writes up to 19).
    private let keyBytes: UnsafeMutableBufferPointer<UInt8>
    private let keyStarts: [Int]

    deinit {
        keyBytes.deallocate()
        namesInSlot.deinitialize(count: Self.namesSlots)
        namesInSlot.deallocate()
        namesCount.deallocate()
        namesBytes.deallocate()
    }

    /// Starts field `field` (`{"name":` or `,"name":`) when it is selected.
    @inline(__always)
    private func key(_ field: EventField, _ line: inout OutputCursor, _ first: inout Bool) -> Bool {
        guard fields & field.bit != 0 else { return false }
        let start = keyStarts[field.rawValue], end = keyStarts[field.rawValue + 1]
        if first {
            line.put(UInt8(ascii: "{"))
            line.put(UnsafeBufferPointer(rebasing: keyBytes[(start + 1)..<end]))
            first = false
        } else {
            line.put(UnsafeBufferPointer(rebasing: keyBytes[start..<end]))
        }
        return true
    }

    /// Appends `event` as one line (`{}` when no field is selected that it has).
    public func append(_ event: DecodedEvent) {
        // Bytes the line can take at most: the fixed part, six per string byte (\u00XX), 46 per address.
        let strings = (event.interface?.utf8.count ?? 0) + event.pod.utf8.count + (event.podNamespace?.utf8.count ?? 0) + event.policy.utf8.count
        buffer.write(atMost: 512 + 6 * strings) { line in
            var first = true
            if key(.bytes, &line, &first) { line.put(integer: event.bytes) }
            if key(.destination, &line, &first) { line.put(UInt8(ascii: "\"")); addresses.put(event.destination, into: &line); line.put(UInt8(ascii: "\"")) }
            if key(.destinationPort, &line, &first) { line.put(integer: event.destinationPort) }
            if key(.direction, &line, &first) { line.put(UInt8(ascii: "\"")); line.put(event.direction.name); line.put(UInt8(ascii: "\"")) }
            if key(.family, &line, &first) { line.put(UInt8(ascii: "\"")); line.put(event.family.name); line.put(UInt8(ascii: "\"")) }
            if let identifier = event.icmpID, key(.icmpID, &line, &first) { line.put(integer: identifier) }
            putNames(event.names, &line, &first)
            if key(.proto, &line, &first) {
                line.put(UInt8(ascii: "\""))
                if let name = ProtocolName.known(event.protocolNumber) {
                    line.put(name)
                } else {
                    line.put("proto-")
                    line.put(integer: event.protocolNumber)
                }
                line.put(UInt8(ascii: "\""))
            }
            if key(.reason, &line, &first) { line.put(UInt8(ascii: "\"")); line.put(event.reason.name); line.put(UInt8(ascii: "\"")) }
            if key(.revision, &line, &first) { line.put(integer: event.revision) }
            if let rule = event.rule, key(.rule, &line, &first) { line.put(integer: rule) }
            if key(.source, &line, &first) { line.put(UInt8(ascii: "\"")); addresses.put(event.source, into: &line); line.put(UInt8(ascii: "\"")) }
            if key(.sourcePort, &line, &first) { line.put(integer: event.sourcePort) }
            if key(.tier, &line, &first) { line.put(UInt8(ascii: "\"")); line.put(event.tier.name); line.put(UInt8(ascii: "\"")) }
            if key(.time, &line, &first) { line.put(UInt8(ascii: "\"")); putTime(event.time, into: &line); line.put(UInt8(ascii: "\"")) }
            if key(.verdict, &line, &first) { line.put(UInt8(ascii: "\"")); line.put(event.verdict.name); line.put(UInt8(ascii: "\"")) }
            line.put(first ? "{}\n" : "}\n")
        }
    }

    /// `interface`, `pod`, `podNamespace` and `policy` (adjacent in the sorted order): events share
    /// their names, so the members are escaped once per names and copied after, from one of a
    /// few slots (by the names' address; each slot holds its names, so no other takes that address).
    @inline(__always)
    private func putNames(_ names: EventNames, _ line: inout OutputCursor, _ first: inout Bool) {
        let slot = DirectMapped.slot(UInt64(UInt(bitPattern: Unmanaged.passUnretained(names).toOpaque())), 0, bits: Self.namesBits)
        let stored = namesBytes + slot * Self.namesSlotBytes
        if namesInSlot[slot] !== names {
            let bound = 64 + 6 * ((names.interface?.utf8.count ?? 0) + names.pod.utf8.count + (names.podNamespace?.utf8.count ?? 0)
                                  + names.policy.utf8.count)
            guard bound <= Self.namesSlotBytes else { return putNamesUncached(names, &line, &first) }
            // Stored as later members (`,"interface":…`); the first member of a line drops the comma.
            var slotCursor = OutputCursor(at: stored), opensLine = false
            putNamesUncached(names, &slotCursor, &opensLine)
            namesCount[slot] = slotCursor.position - stored
            namesInSlot[slot] = names
        }
        let count = namesCount[slot]
        guard count > 0 else { return }
        if first {
            line.put(UInt8(ascii: "{"))
            line.put(UnsafeBufferPointer(start: stored + 1, count: count - 1))
            first = false
        } else {
            line.put(UnsafeBufferPointer(start: stored, count: count))
        }
    }

    private func putNamesUncached(_ names: EventNames, _ line: inout OutputCursor, _ first: inout Bool) {
        if let interface = names.interface, key(.interface, &line, &first) { quoted(interface, &line) }
        if key(.pod, &line, &first) { quoted(names.pod, &line) }
        if let namespace = names.podNamespace, key(.podNamespace, &line, &first) { quoted(namespace, &line) }
        if key(.policy, &line, &first) { quoted(names.policy, &line) }
    }

    private let addresses = AddressTexts()
    private static let namesBits = 6, namesSlots = 1 << namesBits, namesSlotBytes = 512
    private let namesInSlot = UnsafeMutablePointer<EventNames?>.allocate(capacity: namesSlots)
    private let namesCount = UnsafeMutablePointer<Int>.allocate(capacity: namesSlots)
    private let namesBytes = UnsafeMutablePointer<UInt8>.allocate(capacity: namesSlots * namesSlotBytes)

    private func quoted(_ text: String, _ line: inout OutputCursor) {
        line.put(UInt8(ascii: "\""))
        line.put(escaping: text)
        line.put(UInt8(ascii: "\""))
    }

    /// Appends the `{"lost":N}` line.
    public func appendLost(_ lost: UInt64) {
        buffer.write(atMost: 64) { line in
            line.put(#"{"lost":"#)
            line.put(integer: lost)
            line.put("}\n")
        }
    }

    /// Appends the `{"skipped":N}` line: a watcher fell a ring behind (at most N events).
    public func appendSkipped(_ skipped: UInt64) {
        buffer.write(atMost: 64) { line in
            line.put(#"{"skipped":"#)
            line.put(integer: skipped)
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

/// The fields of an event line, as `-o json` and flow logs name them (`--fields`), in the lines' order.
public enum EventField: Int, CaseIterable, Sendable, CustomStringConvertible {
    case bytes, destination, destinationPort, direction, family, icmpID, interface, pod, podNamespace, policy, proto, reason, revision, rule
    case source, sourcePort, tier, time, verdict

    var bit: UInt32 { 1 << UInt32(rawValue) }

    /// The field's JSON key.
    public var description: String { "\(name)" }

    public var name: StaticString {
        switch self {
        case .bytes: "bytes"
        case .destination: "destination"
        case .destinationPort: "destinationPort"
        case .direction: "direction"
        case .family: "family"
        case .icmpID: "icmpID"
        case .interface: "interface"
        case .pod: "pod"
        case .podNamespace: "podNamespace"
        case .policy: "policy"
        case .proto: "proto"
        case .reason: "reason"
        case .revision: "revision"
        case .rule: "rule"
        case .source: "source"
        case .sourcePort: "sourcePort"
        case .tier: "tier"
        case .time: "time"
        case .verdict: "verdict"
        }
    }

    public init?(name: String) {
        guard let field = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = field
    }
}
