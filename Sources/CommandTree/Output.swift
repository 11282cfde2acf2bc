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
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case _ where isControl(scalar): result += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// `text` with its line breaks kept and every other control character escaped: what a
    /// command prints for people, whose lines may quote names from outside. A scan of the
    /// bytes finds nothing to escape in nearly every text; only then is it rebuilt.
    public static func escapedKeepingLines(_ text: String) -> String {
        var text = text
        let clean = text.withUTF8 { bytes in
            !bytes.indices.contains { index in
                let byte = bytes[index]
                return (byte < 0x20 && byte != 0x0a) || byte == 0x7f
                    || (byte == 0xc2 && index + 1 < bytes.count && (0x80...0x9f).contains(bytes[index + 1]))  // C1, in UTF-8
            }
        }
        if clean { return text }
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { escaped(String($0)) }.joined(separator: "\n")
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
