import Foundation

/// How a command prints its results: aligned columns for people, JSON for scripts.
public enum OutputFormat: String, CaseIterable, Sendable, ArgumentValue {
    case table, json
    public static var defaultValueName: String { "format" }
}

/// Text from outside (pod names, file contents, kernel strings) made safe for a
/// terminal: control characters (C0, DEL, C1) become visible escapes, so no
/// escape sequence or line break of theirs reaches the screen as such.
public enum TerminalText {
    /// Whether a scalar is a control character a terminal would act on.
    @inlinable public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    /// `a\x1b[31mb` for `a<ESC>[31mb`; `\n`, `\t`, `\r` for those three.
    public static func escaped(_ text: String) -> String { escaped(text, keepingLineBreaks: false) }

    /// As `escaped(_:)`; with `keepingLineBreaks` line breaks stay as they are (a command's own
    /// lines, which may quote names from outside).
    public static func escaped(_ text: String, keepingLineBreaks: Bool) -> String {
        var text = text
        guard text.withUTF8({ mayHoldControls($0, exceptLineBreaks: keepingLineBreaks) }) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += keepingLineBreaks ? "\n" : "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case _ where isControl(scalar): result += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Whether UTF-8 `bytes` hold a control character: C0 and DEL are single bytes, C1 is 0xc2 and a
    /// byte below 0xa0. One pass over the bytes lets nearly every text through untouched.
    @inlinable public static func mayHoldControls(_ bytes: UnsafeBufferPointer<UInt8>, exceptLineBreaks: Bool = false) -> Bool {
        bytes.indices.contains { index in
            let byte = bytes[index]
            return (byte < 0x20 && !(exceptLineBreaks && byte == 0x0a)) || byte == 0x7f
                || (byte == 0xc2 && index + 1 < bytes.endIndex && bytes[index + 1] < 0xa0)
        }
    }
}

/// An aligned text table: a header row and left-aligned columns two spaces apart.
public struct Table: Sendable {
    public let headers: [String]
    public private(set) var rows: [[String]] = []

    public init(headers: [String]) {
        self.headers = headers
    }

    /// Adds a row; missing cells print empty, extra cells are dropped; control
    /// characters in a cell are escaped (``TerminalText``).
    public mutating func append(_ row: [String]) {
        rows.append((0..<headers.count).map { $0 < row.count ? TerminalText.escaped(row[$0]) : "" })
    }

    /// The table as lines; trailing spaces trimmed.
    public func render(headers showHeaders: Bool = true) -> String {
        let all = (showHeaders ? [headers] : []) + rows
        let widths = headers.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }.joined(separator: "\n")
    }
}

/// JSON for scripts: sorted keys so field order is stable, ISO-8601 dates.
public enum JSONOutput {
    public static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// Where a command's output goes: its bytes, in order.
public struct OutputSink {
    private let writeBytes: (UnsafeRawBufferPointer) -> Void
    private let readerGone: () -> Bool

    /// `readerGone` says whether whoever reads the output went away (a closed pipe).
    public init(_ writeBytes: @escaping (UnsafeRawBufferPointer) -> Void, readerGone: @escaping () -> Bool = { false }) {
        self.writeBytes = writeBytes
        self.readerGone = readerGone
    }

    /// Writes all of its bytes to `descriptor`, retrying short writes; once the
    /// reader went away (EPIPE) the rest is dropped.
    public static func fileDescriptor(_ descriptor: Int32) -> OutputSink {
        OutputSink({ bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }, readerGone: {
            // A pipe whose reader closed it reports POLLERR; a closed terminal, POLLHUP.
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            return poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0
        })
    }

    /// Whoever reads this output went away: a command that follows a stream stops.
    public var isReaderGone: Bool { readerGone() }

    public func callAsFunction(_ bytes: UnsafeRawBufferPointer) { writeBytes(bytes) }

    /// Writes `text` straight from the string's storage.
    public func write(_ text: String) {
        var text = text
        text.withUTF8 { writeBytes(UnsafeRawBufferPointer($0)) }
    }
}
