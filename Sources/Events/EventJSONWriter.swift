import DatapathModel
import Foundation
import Glibc

/// Writes events as JSON Lines, the `-o json` form of `ebpf events`: the
/// fields of ``DecodedEvent`` under their names, sorted, optional ones left out
/// when absent, times as `2026-11-23T13:59:01.123Z` (UTC, milliseconds
/// truncated) — what JSONEncoder would write, at a fraction of its cost.
/// Written by hand because the log must keep up with the datapath: JSONEncoder
/// and a date formatter cost ~10 µs an event (`netfence bench events`
/// measures this writer). Lines collect in the writer until ``flush(to:)``.
public final class EventJSONWriter {
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// `2026-11-23T13:59:01.` of the last second written: events come in bursts within one second.
    private var cachedSecond = Int.min
    private var cachedSecondText: [UInt8] = []

    public init(capacity: Int = 64 * 1024) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    /// Hands the lines written since the last flush to `output`; the writer starts empty again.
    public func flush(to output: (UnsafeRawBufferPointer) -> Void) {
        guard count > 0 else { return }
        output(UnsafeRawBufferPointer(start: storage, count: count))
        count = 0
    }

    /// Appends `event` as one line.
    public func append(_ event: DecodedEvent) {
        // Bytes the line can take at most: the fixed part, six per string byte (\u00XX), 46 per address.
        let strings = event.direction.utf8.count + event.family.utf8.count + (event.interface?.utf8.count ?? 0)
            + event.pod.utf8.count + (event.podNamespace?.utf8.count ?? 0) + event.policy.utf8.count + event.proto.utf8.count
            + event.reason.utf8.count + event.tier.utf8.count + event.verdict.utf8.count
        reserve(512 + 6 * strings)
        var line = LineCursor(at: storage + count)
        line.put(#"{"bytes":"#)
        line.put(integer: event.bytes)
        line.put(#","destination":""#)
        line.put(address: event.destination)
        line.put(#"","destinationPort":"#)
        line.put(integer: event.destinationPort)
        line.put(#","direction":""#)
        line.put(escaping: event.direction)
        line.put(#"","family":""#)
        line.put(escaping: event.family)
        if let interface = event.interface {
            line.put(#"","interface":""#)
            line.put(escaping: interface)
        }
        line.put(#"","pod":""#)
        line.put(escaping: event.pod)
        if let namespace = event.podNamespace {
            line.put(#"","podNamespace":""#)
            line.put(escaping: namespace)
        }
        line.put(#"","policy":""#)
        line.put(escaping: event.policy)
        line.put(#"","proto":""#)
        line.put(escaping: event.proto)
        line.put(#"","reason":""#)
        line.put(escaping: event.reason)
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
        line.put(escaping: event.tier)
        line.put(#"","time":""#)
        putTime(event.time, into: &line)
        line.put(#"","verdict":""#)
        line.put(escaping: event.verdict)
        line.put("\"}\n")
        count = line.pointer - storage
    }

    /// Appends the `{"lost":N}` line.
    public func appendLost(_ lost: UInt64) {
        reserve(64)
        var line = LineCursor(at: storage + count)
        line.put(#"{"lost":"#)
        line.put(integer: lost)
        line.put("}\n")
        count = line.pointer - storage
    }

    private func reserve(_ bytes: Int) {
        guard count + bytes > capacity else { return }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: max(capacity * 2, count + bytes))
        grown.update(from: storage, count: count)
        storage.deallocate()
        storage = grown
        capacity = max(capacity * 2, count + bytes)
    }

    /// `2026-11-23T13:59:01.123Z`.
    private func putTime(_ date: Date, into line: inout LineCursor) {
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

/// Writes a line's bytes where it points; the writer reserved room for the line first.
private struct LineCursor {
    var pointer: UnsafeMutablePointer<UInt8>

    init(at pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }

    mutating func put(_ byte: UInt8) {
        pointer.pointee = byte
        pointer += 1
    }

    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        pointer.update(from: bytes.baseAddress!, count: bytes.count)
        pointer += bytes.count
    }

    mutating func put(_ text: StaticString) {
        text.withUTF8Buffer { put($0) }
    }

    /// The string's UTF-8 with JSON's escapes (as JSONEncoder writes them, slashes unescaped).
    mutating func put(escaping text: String) {
        var text = text
        text.withUTF8 { bytes in
            // Names and words need no escapes: one pass copies and checks.
            let start = pointer
            for byte in bytes {
                if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                    pointer = start
                    putEscaped(bytes)
                    return
                }
                put(byte)
            }
        }
    }

    mutating func putEscaped(_ bytes: UnsafeBufferPointer<UInt8>) {
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): put(#"\""#)
            case UInt8(ascii: "\\"): put(#"\\"#)
            case 0x0a: put(#"\n"#)
            case 0x0d: put(#"\r"#)
            case 0x09: put(#"\t"#)
            case 0x08: put(#"\b"#)
            case 0x0c: put(#"\f"#)
            case 0..<0x20:
                put(#"\u00"#)
                put(hexDigit: byte >> 4)
                put(hexDigit: byte & 0xf)
            default: put(byte)
            }
        }
    }

    mutating func put(hexDigit value: UInt8) {
        put(value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10)
    }

    mutating func put<T: BinaryInteger>(integer value: T) {
        var value = UInt64(value)
        var digits = 1
        var scale: UInt64 = 10
        while value >= scale && digits < 20 {
            digits += 1
            scale = scale &* 10
        }
        pointer += digits
        for index in 1...digits {
            pointer[-index] = UInt8(ascii: "0") + UInt8(value % 10)
            value /= 10
        }
    }

    mutating func put(octet: UInt8) {
        if octet >= 100 { put(UInt8(ascii: "0") + octet / 100) }
        if octet >= 10 { put(UInt8(ascii: "0") + octet / 10 % 10) }
        put(UInt8(ascii: "0") + octet % 10)
    }

    /// The address as people write it: dotted IPv4; IPv6 as RFC 5952 (and inet_ntop) write it.
    mutating func put(address: IPAddress) {
        address.withBytes { bytes in
            if address.isIPv4 {
                put(octet: bytes[12])
                for index in 13..<16 {
                    put(UInt8(ascii: "."))
                    put(octet: bytes[index])
                }
                return
            }
            let word = { (index: Int) in UInt16(bytes[2 &* index]) &<< 8 | UInt16(bytes[2 &* index &+ 1]) }
            if (0..<6).allSatisfy({ word($0) == 0 }) || (0..<5).allSatisfy({ word($0) == 0 }) && word(5) == 0xffff {
                // Forms inet_ntop writes with a dotted tail (`::198.18.0.1`): rare, leave them to it.
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                _ = inet_ntop(AF_INET6, bytes.baseAddress, &text, socklen_t(text.count))
                text.withUnsafeBytes { put(UnsafeBufferPointer(start: $0.baseAddress!.assumingMemoryBound(to: UInt8.self), count: strlen(text))) }
                return
            }
            // The longest run of two or more zero words (the first of equals) becomes `::`.
            var bestStart = -1, bestLength = 1, runStart = -1
            for index in 0...8 {
                if index < 8 && word(index) == 0 {
                    if runStart < 0 { runStart = index }
                } else if runStart >= 0 {
                    if index - runStart > bestLength { (bestStart, bestLength) = (runStart, index - runStart) }
                    runStart = -1
                }
            }
            var index = 0
            while index < 8 {
                if index == bestStart {
                    put("::")
                    index += bestLength
                    if index == 8 { break }
                } else if index > 0 {
                    put(UInt8(ascii: ":"))
                }
                put(hex: word(index))
                index += 1
            }
        }
    }

    mutating func put(hex word: UInt16) {
        var shift: UInt16 = 12
        while shift > 0 && word >> shift == 0 { shift -= 4 }
        while true {
            put(hexDigit: UInt8(word >> shift & 0xf))
            if shift == 0 { return }
            shift -= 4
        }
    }
}
