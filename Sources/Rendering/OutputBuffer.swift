import CommandTree
import DatapathModel
import Glibc

/// Output built as bytes, fast enough for millions of lines a second: a
/// growing buffer a command fills line by line through an ``OutputCursor``
/// and hands to its output in large writes. (JSONEncoder and string
/// interpolation cost microseconds a line; this costs tens of nanoseconds.)
public final class OutputBuffer {
    @usableFromInline var storage: UnsafeMutablePointer<UInt8>
    @usableFromInline var capacity: Int
    /// Bytes written and not yet flushed.
    @usableFromInline var written = 0

    public init(capacity: Int = 64 * 1024) {
        self.capacity = max(capacity, 16)
        storage = .allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    /// Reserves `maximum` bytes and lets `body` write at most that many.
    @inlinable
    public func write(atMost maximum: Int, _ body: (inout OutputCursor) -> Void) {
        if written + maximum > capacity { grow(toHold: maximum) }
        var cursor = OutputCursor(at: storage + written)
        body(&cursor)
        written = cursor.pointer - storage
        precondition(written <= capacity, "a line wrote more than it reserved")
    }

    @usableFromInline
    func grow(toHold maximum: Int) {
        let grown = max(capacity * 2, written + maximum)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        bigger.update(from: storage, count: written)
        storage.deallocate()
        storage = bigger
        capacity = grown
    }

    /// Hands what was written since the last flush to `output`; the buffer starts empty again.
    public func flush(to output: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        guard written > 0 else { return }
        defer { written = 0 }
        try output(UnsafeRawBufferPointer(start: storage, count: written))
    }

    /// Flushes once `threshold` bytes are waiting: output streams in large writes.
    public func flush(ifOver threshold: Int, to output: (UnsafeRawBufferPointer) -> Void) {
        if written >= threshold { flush(to: output) }
    }
}

/// Writes bytes where it points, into room its ``OutputBuffer`` reserved.
public struct OutputCursor {
    @usableFromInline var pointer: UnsafeMutablePointer<UInt8>

    /// A cursor writing at `pointer`, into room its caller holds (an ``OutputBuffer`` hands out its own).
    @inlinable public init(at pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }

    @inlinable public mutating func put(_ byte: UInt8) {
        pointer.pointee = byte
        pointer += 1
    }

    @inlinable public mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        pointer.update(from: bytes.baseAddress!, count: bytes.count)
        pointer += bytes.count
    }

    @inlinable public mutating func put(_ text: StaticString) {
        text.withUTF8Buffer { put($0) }
    }

    /// The inside of a JSON string: the UTF-8 with JSON's escapes (as JSONEncoder writes them, slashes unescaped).
    @inlinable public mutating func put(escaping text: String) {
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

    @inlinable mutating func putEscaped(_ bytes: UnsafeBufferPointer<UInt8>) {
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

    /// `text` for a table cell: as it is, control characters escaped for the
    /// terminal (``TerminalText``; JSON strings go through ``put(escaping:)``).
    @inlinable public mutating func put(text: String) {
        var text = text
        let plain = text.withUTF8 { !TerminalText.mayHoldControls($0) }
        if !plain { text = TerminalText.escaped(text) }
        text.withUTF8 { if !$0.isEmpty { put($0) } }
    }

    /// What `body` writes, then spaces up to `width` characters and one more: a column of a streamed table.
    @inlinable public mutating func putCell(width: Int, _ body: (inout OutputCursor) -> Void) {
        let start = pointer
        body(&self)
        var characters = 0
        for byte in UnsafeBufferPointer(start: start, count: pointer - start) where byte & 0xc0 != 0x80 { characters += 1 }
        put(spaces: max(1, width - characters + 1))
    }

    /// A fixed-width integer in host byte order, for binary formats (pcapng).
    @inlinable public mutating func put<T: FixedWidthInteger>(binary value: T) {
        UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: T.self)
        pointer += MemoryLayout<T>.size
    }

    /// Raw bytes, for binary formats.
    @inlinable public mutating func put(bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: bytes.count)
        pointer += bytes.count
    }

    /// Where the next byte goes: for a binary length written after what it measures (`patch`),
    /// or to copy what was written since.
    @inlinable public var position: UnsafeMutablePointer<UInt8> { pointer }

    /// Overwrites the integer at `position` (one this cursor has written past).
    @inlinable public func patch<T: FixedWidthInteger>(_ value: T, at position: UnsafeMutablePointer<UInt8>) {
        UnsafeMutableRawPointer(position).storeBytes(of: value, as: T.self)
    }

    /// Zeros up to the next multiple of `alignment` bytes since `start`.
    @inlinable public mutating func pad(toMultipleOf alignment: Int, since start: UnsafeMutablePointer<UInt8>) {
        while (pointer - start) % alignment != 0 { put(UInt8(0)) }
    }

    @inlinable public mutating func put(spaces: Int) {
        pointer.update(repeating: UInt8(ascii: " "), count: spaces)
        pointer += spaces
    }

    /// `value` with `fractionDigits` digits after the point (rounded), e.g. `3.2`; no exponent.
    @inlinable public mutating func put(decimal value: Double, fractionDigits: Int) {
        var scale = 1.0
        for _ in 0..<fractionDigits { scale *= 10 }
        var scaled = (abs(value) * scale).rounded()
        if value < 0 && scaled > 0 { put(UInt8(ascii: "-")) }
        if !scaled.isFinite || scaled >= 1e18 { scaled = 1e18 - 1 }
        let whole = UInt64(scaled / scale)
        put(integer: whole)
        guard fractionDigits > 0 else { return }
        put(UInt8(ascii: "."))
        var fraction = UInt64(scaled) - whole * UInt64(scale)
        var divisor = UInt64(scale) / 10
        while divisor > 0 {
            put(UInt8(ascii: "0") + UInt8(fraction / divisor))
            fraction %= divisor
            divisor /= 10
        }
    }

    @inlinable public mutating func put(hexDigit value: UInt8) {
        put(value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10)
    }

    @inlinable public mutating func put<T: BinaryInteger>(integer value: T) {
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

    @inlinable mutating func put(octet: UInt8) {
        if octet >= 100 { put(UInt8(ascii: "0") + octet / 100) }
        if octet >= 10 { put(UInt8(ascii: "0") + octet / 10 % 10) }
        put(UInt8(ascii: "0") + octet % 10)
    }

    /// The address as people write it: dotted IPv4; IPv6 as RFC 5952 (and inet_ntop) write it.
    @inlinable public mutating func put(address: IPAddress, as family: AddressFamily? = nil) {
        address.withBytes { bytes in
            if (family ?? address.family) == .ipv4 {
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

    @inlinable mutating func put(hex word: UInt16) {
        var shift: UInt16 = 12
        while shift > 0 && word >> shift == 0 { shift -= 4 }
        while true {
            put(hexDigit: UInt8(word >> shift & 0xf))
            if shift == 0 { return }
            shift -= 4
        }
    }
}
