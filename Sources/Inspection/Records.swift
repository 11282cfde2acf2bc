import DatapathModel
import Rendering

/// One field of a decoded map entry, as both the table and JSON show it.
public enum FieldValue {
    case text(String)
    /// A fixed word (an enum's name): written as it is, nothing to escape or count.
    case word(StaticString)
    case number(UInt64)
    case address(IPAddress)
    /// A prefix as people write it (`198.18.0.0/16`).
    case prefix(IPPrefix)
    /// A list of numbers (per-CPU values, raw bytes).
    case numbers([UInt64])
    /// Seconds since something happened: `3.2s ago` in a table, a number in JSON.
    case age(Double)
    /// A value with inner structure (a struct decoded from BTF): JSON in the table too.
    case structured(StructuredValue)
    /// Nothing to show: `-` in a table, `null` in JSON.
    case none
}

/// A value decoded from a type description: numbers, strings, arrays, objects.
public indirect enum StructuredValue {
    case unsigned(UInt64)
    case signed(Int64)
    case bool(Bool)
    case string(String)
    case array([StructuredValue])
    case object([(name: String, value: StructuredValue)])

    /// At most how many bytes its JSON takes.
    var maximumBytes: Int {
        switch self {
        case .unsigned, .signed, .bool: 21
        case .string(let text): 2 + 6 * text.utf8.count
        case .array(let elements): elements.reduce(2) { $0 + 1 + $1.maximumBytes }
        case .object(let members): members.reduce(2) { $0 + 4 + 6 * $1.name.utf8.count + $1.value.maximumBytes }
        }
    }
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

    /// A flow's protocol and endpoints, in every layout that shows flows.
    public static let flow = [
        Column("proto", "PROTO", width: 6), Column("source", "SOURCE", width: 39), Column("sourcePort", "SPORT", width: 5),
        Column("destination", "DESTINATION", width: 39), Column("destinationPort", "DPORT", width: 5),
    ]
}

/// Streams decoded entries as an aligned table (fixed column widths, so
/// nothing is held back) or as one JSON array, one object per line. Each row
/// goes straight into the output buffer, field by field, in one reserved stretch.
public final class RecordWriter {
    public enum Format { case table, json }

    private let format: Format
    private let buffer = OutputBuffer(capacity: 1 << 20)
    private let output: (UnsafeRawBufferPointer) -> Void
    private var rows = 0
    /// Per column: its width, and its JSON key with quotes and colon (`"pod":`); made once, read by every row.
    private let layout: RowCursor.Columns
    /// Bytes a row takes besides its values' own.
    private let rowOverhead: Int

    public init(columns: [Column], format: Format, headers: Bool = true, output: @escaping (UnsafeRawBufferPointer) -> Void) {
        precondition(!columns.isEmpty, "a record has at least one column")
        self.format = format
        self.output = output
        layout = RowCursor.Columns(columns)
        repeated = RepeatedFields(columns: columns.count)
        rowOverhead = 16 + layout.keyBytes + columns.reduce(0) { $0 + $1.width + 2 }
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

    deinit { layout.deallocate() }

    /// How many rows were written.
    public var rowCount: Int { rows }

    /// Writes one row; `fields` line up with the columns.
    public func write(_ fields: FieldValue...) {
        precondition(fields.count == layout.count, "a row has a field per column")
        writeRow(valueBytes: fields.reduce(0) { $0 + Self.maximumBytes($1) }) { row in
            for field in fields { row.put(field) }
        }
    }

    /// Writes one row field by field with `RowCursor.put`, a field per column in order;
    /// `valueBytes` bounds what the values take (``maximumBytes(_:)`` of each).
    func writeRow(valueBytes: Int, _ body: (inout RowCursor) -> Void) {
        let json = format == .json
        buffer.write(atMost: rowOverhead + valueBytes) { cursor in
            if json { cursor.put(rows == 0 ? "[\n" : ",\n") }
            var row = RowCursor(cursor: cursor, json: json, columns: layout, repeated: repeated)
            body(&row)
            precondition(row.column == layout.count, "a row has a field per column")
            cursor = row.cursor
        }
        rows += 1
        buffer.flush(ifOver: 1 << 19, to: output)
    }

    /// The fields rows repeat, as this writer wrote them (see ``RowCursor/putRepeated(_:_:)``).
    private let repeated: RepeatedFields

    /// Ends the output (closes the JSON array) and writes what is left.
    public func finish() {
        if format == .json {
            buffer.write(atMost: 8) { $0.put(rows == 0 ? "[]\n" : "\n]\n") }
        }
        buffer.flush(to: output)
    }

    /// At most how many bytes `value` writes (JSON escapes included).
    static func maximumBytes(_ value: FieldValue) -> Int {
        switch value {
        case .text(let text): 2 + 6 * text.utf8.count
        case .numbers(let numbers): 2 + 21 * numbers.count
        case .word(let word): 2 + word.utf8CodeUnitCount
        case .structured(let value): value.maximumBytes
        default: 64
        }
    }
}

/// Runs of fields a writer rendered once and copies into every row that repeats them,
/// by the column they start at and the caller's key for their values. Each starting
/// column has its own ``DirectMapped`` table of fixed slots (the runs of one row never
/// evict each other; a key that lost its slot to another of its column is rendered
/// again), in raw memory, so reads and writes take no checks. Untouched slots cost no
/// memory: the pages are only mapped.
final class RepeatedFields {
    struct Key: Equatable {
        var column: Int, first: UInt64, second: UInt64

        init(column: Int = 0, _ first: UInt64, _ second: UInt64 = 0) {
            self.column = column
            self.first = first
            self.second = second
        }

        var slot: Int { column << RepeatedFields.bits | DirectMapped.slot(first, second, bits: RepeatedFields.bits) }
    }

    struct Entry {
        var key: Key
        /// Bytes in the slot; 0: empty.
        var count: Int
        var columns: Int
    }

    static let bits = 8, slotBytes = 512
    /// And the addresses rows name again and again (a pod's own on each of its flows).
    let addresses = AddressTexts()
    let slots: Int
    let entries: UnsafeMutablePointer<Entry>
    let bytes: UnsafeMutablePointer<UInt8>

    init(columns: Int) {
        slots = columns << Self.bits
        entries = .allocate(capacity: slots)
        entries.initialize(repeating: Entry(key: Key(0), count: 0, columns: 0), count: slots)
        bytes = .allocate(capacity: slots * Self.slotBytes)
    }

    deinit {
        entries.deallocate()
        bytes.deallocate()
    }
}

/// Where the fields of one row go: a cell of the table, or a member of the row's JSON object.
struct RowCursor {
    /// The columns' widths and JSON keys, in memory a row reads without reference counting.
    struct Columns {
        let count: Int
        let widths: UnsafeMutableBufferPointer<Int>
        let keys: UnsafeMutableBufferPointer<UInt8>
        /// Where column i's key starts in `keys`; `count + 1` offsets.
        let keyOffsets: UnsafeMutableBufferPointer<Int>
        var keyBytes: Int { keys.count }

        init(_ columns: [Column]) {
            count = columns.count
            widths = .allocate(capacity: count)
            _ = widths.initialize(from: columns.map(\.width))
            let keyText = columns.map { Array("\"\($0.key)\":".utf8) }
            keys = .allocate(capacity: keyText.reduce(0) { $0 + $1.count })
            _ = keys.initialize(from: keyText.joined())
            keyOffsets = .allocate(capacity: count + 1)
            _ = keyOffsets.initialize(from: keyText.reduce(into: [0]) { $0.append($0.last! + $1.count) })
        }

        func deallocate() {
            widths.deallocate()
            keys.deallocate()
            keyOffsets.deallocate()
        }
    }

    var cursor: OutputCursor
    let json: Bool
    let columns: Columns
    let repeated: RepeatedFields
    /// The column the next field goes in.
    private(set) var column = 0

    init(cursor: OutputCursor, json: Bool, columns: Columns, repeated: RepeatedFields) {
        self.cursor = cursor
        self.json = json
        self.columns = columns
        self.repeated = repeated
    }

    /// Fields from this column on whose values `key` determines (a pod's name and interface,
    /// a rule's policy): `body` puts them the first time, later rows copy what it wrote.
    /// Their bytes depend on nothing else (the row's JSON separator is written before it);
    /// the row's reservation counts their values as if they were put.
    @inline(__always)
    mutating func putRepeated(_ key: RepeatedFields.Key, _ body: (inout RowCursor) -> Void) {
        let key = RepeatedFields.Key(column: column, key.first, key.second)
        let slot = key.slot, entry = repeated.entries + slot, stored = repeated.bytes + slot * RepeatedFields.slotBytes
        if entry.pointee.count > 0, entry.pointee.key == key {
            cursor.put(UnsafeBufferPointer(start: stored, count: entry.pointee.count))
            column += entry.pointee.columns
            return
        }
        let start = cursor.position, firstColumn = column
        body(&self)
        let count = cursor.position - start
        guard count <= RepeatedFields.slotBytes else { return }  // long names: written every time
        stored.update(from: start, count: count)
        entry.pointee = RepeatedFields.Entry(key: key, count: count, columns: column - firstColumn)
    }

    /// The next field; the row ends (newline, or the object's brace) with its last column.
    @inline(__always)
    mutating func put(_ value: FieldValue) {
        let isLast = column == columns.count - 1
        if json {
            cursor.put(column == 0 ? UInt8(ascii: "{") : UInt8(ascii: ","))
            cursor.put(UnsafeBufferPointer(rebasing: columns.keys[columns.keyOffsets[column]..<columns.keyOffsets[column + 1]]))
            Self.putJSON(value, addresses: repeated.addresses, into: &cursor)
            if isLast { cursor.put(UInt8(ascii: "}")) }
        } else if isLast {
            Self.putCell(value, addresses: repeated.addresses, into: &cursor)
            cursor.put(UInt8(ascii: "\n"))
        } else {
            let addresses = repeated.addresses
            cursor.putCell(width: columns.widths[column]) { Self.putCell(value, addresses: addresses, into: &$0) }
        }
        column += 1
    }

    @inline(__always)
    private static func putCell(_ value: FieldValue, addresses: AddressTexts, into cursor: inout OutputCursor) {
        switch value {
        case .text(let text): cursor.put(text: text)
        case .word(let word): cursor.put(word)
        case .number(let number): cursor.put(integer: number)
        case .age(let seconds):
            cursor.put(decimal: seconds, fractionDigits: 1)
            cursor.put("s ago")
        case .address(let address): addresses.put(address, into: &cursor)
        case .prefix(let prefix): putPrefix(prefix, into: &cursor)
        case .numbers(let numbers): putList(numbers, into: &cursor)
        case .structured(let value): putStructured(value, into: &cursor)
        case .none: cursor.put(UInt8(ascii: "-"))
        }
    }

    @inline(__always)
    private static func putJSON(_ value: FieldValue, addresses: AddressTexts, into cursor: inout OutputCursor) {
        switch value {
        case .text(let text): quoted(&cursor) { $0.put(escaping: text) }
        case .word(let word): quoted(&cursor) { $0.put(word) }
        case .number(let number): cursor.put(integer: number)
        case .age(let seconds): cursor.put(decimal: seconds, fractionDigits: 3)
        case .address(let address): quoted(&cursor) { addresses.put(address, into: &$0) }
        case .prefix(let prefix): quoted(&cursor) { putPrefix(prefix, into: &$0) }
        case .numbers(let numbers):
            cursor.put(UInt8(ascii: "["))
            putList(numbers, into: &cursor)
            cursor.put(UInt8(ascii: "]"))
        case .structured(let value): putStructured(value, into: &cursor)
        case .none: cursor.put("null")
        }
    }

    /// What `body` writes, between double quotes: a JSON string.
    @inline(__always)
    private static func quoted(_ cursor: inout OutputCursor, _ body: (inout OutputCursor) -> Void) {
        cursor.put(UInt8(ascii: "\""))
        body(&cursor)
        cursor.put(UInt8(ascii: "\""))
    }

    private static func putStructured(_ value: StructuredValue, into cursor: inout OutputCursor) {
        switch value {
        case .unsigned(let number): cursor.put(integer: number)
        case .signed(let number):
            if number < 0 { cursor.put(UInt8(ascii: "-")) }
            cursor.put(integer: number.magnitude)
        case .bool(let flag): cursor.put(flag ? "true" : "false")
        case .string(let text): quoted(&cursor) { $0.put(escaping: text) }
        case .array(let elements):
            cursor.put(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { cursor.put(UInt8(ascii: ",")) }
                putStructured(element, into: &cursor)
            }
            cursor.put(UInt8(ascii: "]"))
        case .object(let members):
            cursor.put(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { cursor.put(UInt8(ascii: ",")) }
                quoted(&cursor) { $0.put(escaping: member.name) }
                cursor.put(UInt8(ascii: ":"))
                putStructured(member.value, into: &cursor)
            }
            cursor.put(UInt8(ascii: "}"))
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
        cursor.put(address: prefix.address, as: prefix.family)
        cursor.put(UInt8(ascii: "/"))
        cursor.put(integer: prefix.familyLength)
    }
}
