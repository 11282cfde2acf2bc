import DatapathModel
import Rendering

/// One field of a decoded map entry, as both the table and JSON show it.
public enum FieldValue: Equatable {
    case text(String)
    case number(UInt64)
    case address(IPAddress)
    /// A prefix as people write it (`198.18.0.0/16`).
    case prefix(IPPrefix)
    /// A list of numbers (per-CPU values, raw bytes).
    case numbers([UInt64])
    /// Seconds since something happened: `3.2s ago` in a table, a number in JSON.
    case age(Double)
    /// Nothing to show: `-` in a table, `null` in JSON.
    case none
}

/// A column of a decoded map: its JSON key (stable interface), table header and width.
public struct Column: Sendable {
    public let key: String
    public let header: String
    public let width: Int

    /// `width` grows to the header's length, so header and rows align.
    public init(_ key: String, _ header: String, width: Int) {
        self.key = key
        self.header = header
        self.width = max(width, header.count)
    }
}

/// Streams decoded entries as an aligned table (fixed column widths, so
/// nothing is held back) or as one JSON array, one object per line.
public final class RecordWriter {
    public enum Format { case table, json }

    private let columns: [Column]
    private let format: Format
    private let headers: Bool
    private let buffer = OutputBuffer(capacity: 1 << 20)
    private let output: (UnsafeRawBufferPointer) -> Void
    private var rows = 0
    /// JSON keys with their quotes and colon, made once.
    private let jsonKeys: [String]

    public init(columns: [Column], format: Format, headers: Bool = true, output: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.columns = columns
        self.format = format
        self.headers = headers
        self.output = output
        jsonKeys = columns.map { "\"\($0.key)\":" }
        if format == .table, headers {
            let line = columns.enumerated().map { index, column in
                index == columns.count - 1 ? column.header : column.header.padding(toLength: column.width + 1, withPad: " ", startingAt: 0)
            }.joined()
            buffer.write(atMost: line.utf8.count + 1) { cursor in
                cursor.put(text: line)
                cursor.put(UInt8(ascii: "\n"))
            }
        }
    }

    /// How many rows were written.
    public var rowCount: Int { rows }

    /// Writes one row; `values` line up with the columns.
    public func write(_ values: [FieldValue]) {
        let maximum = 64 + values.reduce(0) { $0 + Self.maximumBytes($1) } + columns.reduce(0) { $0 + $1.width + $1.key.utf8.count + 4 }
        buffer.write(atMost: maximum) { cursor in
            switch format {
            case .table:
                for (index, value) in values.enumerated() {
                    if index == values.count - 1 {
                        Self.putCell(value, into: &cursor)
                    } else {
                        cursor.putCell(width: columns[index].width) { Self.putCell(value, into: &$0) }
                    }
                }
                cursor.put(UInt8(ascii: "\n"))
            case .json:
                cursor.put(rows == 0 ? "[\n{" : ",\n{")
                for (index, value) in values.enumerated() {
                    if index > 0 { cursor.put(UInt8(ascii: ",")) }
                    cursor.put(text: jsonKeys[index])
                    Self.putJSON(value, into: &cursor)
                }
                cursor.put(UInt8(ascii: "}"))
            }
        }
        rows += 1
        buffer.flush(ifOver: 1 << 19, to: output)
    }

    /// Ends the output (closes the JSON array) and writes what is left.
    public func finish() {
        if format == .json {
            buffer.write(atMost: 8) { $0.put(rows == 0 ? "[]\n" : "\n]\n") }
        }
        buffer.flush(to: output)
    }

    private static func maximumBytes(_ value: FieldValue) -> Int {
        switch value {
        case .text(let text): 2 + 6 * text.utf8.count
        case .numbers(let numbers): 2 + 21 * numbers.count
        default: 64
        }
    }

    private static func putCell(_ value: FieldValue, into cursor: inout OutputCursor) {
        switch value {
        case .text(let text): cursor.put(text: text)
        case .number(let number): cursor.put(integer: number)
        case .age(let seconds):
            cursor.put(decimal: seconds, fractionDigits: 1)
            cursor.put("s ago")
        case .address(let address): cursor.put(address: address)
        case .prefix(let prefix): putPrefix(prefix, into: &cursor)
        case .numbers(let numbers): putList(numbers, into: &cursor)
        case .none: cursor.put(UInt8(ascii: "-"))
        }
    }

    private static func putJSON(_ value: FieldValue, into cursor: inout OutputCursor) {
        switch value {
        case .text(let text):
            cursor.put(UInt8(ascii: "\""))
            cursor.put(escaping: text)
            cursor.put(UInt8(ascii: "\""))
        case .number(let number): cursor.put(integer: number)
        case .age(let seconds): cursor.put(decimal: seconds, fractionDigits: 3)
        case .address(let address):
            cursor.put(UInt8(ascii: "\""))
            cursor.put(address: address)
            cursor.put(UInt8(ascii: "\""))
        case .prefix(let prefix):
            cursor.put(UInt8(ascii: "\""))
            putPrefix(prefix, into: &cursor)
            cursor.put(UInt8(ascii: "\""))
        case .numbers(let numbers):
            cursor.put(UInt8(ascii: "["))
            putList(numbers, into: &cursor)
            cursor.put(UInt8(ascii: "]"))
        case .none: cursor.put("null")
        }
    }

    /// `1,2,3`.
    private static func putList(_ numbers: [UInt64], into cursor: inout OutputCursor) {
        for (index, number) in numbers.enumerated() {
            if index > 0 { cursor.put(UInt8(ascii: ",")) }
            cursor.put(integer: number)
        }
    }

    private static func putPrefix(_ prefix: IPPrefix, into cursor: inout OutputCursor) {
        cursor.put(address: prefix.address)
        cursor.put(UInt8(ascii: "/"))
        cursor.put(integer: prefix.familyLength)
    }
}
