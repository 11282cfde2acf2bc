import BPFKit

/// A map no layout describes but its own BTF does: key and value decoded by
/// field name, as bpftool prints them (its `formatted` object): integers as
/// numbers, char arrays holding a string as strings, enums by name, structs
/// and unions as objects, bitfields and 128-bit integers as hex strings.
final class BTFLayout: MapLayout {
    private let btf: BTF
    private let keyType: UInt32, valueType: UInt32
    /// Per-CPU maps: one value per CPU, each in an 8-aligned slot.
    private let perCPUSlot: Int?
    /// Types are read from the BTF once, not per entry.
    private var types: [UInt32: BTF.TypeInfo] = [:]

    var title: String { "BTF" }
    let columns: [Column]

    init(btf: BTF, info: MapInfo) {
        self.btf = btf
        keyType = info.btfKeyTypeID
        valueType = info.btfValueTypeID
        perCPUSlot = info.type.isPerCPU ? (Int(info.valueSize) + 7) / 8 * 8 : nil
        columns = [Column("key", "KEY", width: 24), perCPUSlot == nil ? Column("value", "VALUE", width: 24) : Column("values", "VALUES", width: 24)]
    }

    func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into rows: RecordWriter) {
        let decodedKey = keyType == 0 ? Self.hexBytes(key) : decode(keyType, key, bitOffset: 0)
        guard let slot = perCPUSlot else {
            rows.write(.structured(decodedKey), .structured(decode(valueType, value, bitOffset: 0)))
            return
        }
        let values = stride(from: 0, to: value.count - slot + 1, by: slot).enumerated().map { cpu, offset in
            StructuredValue.object([("cpu", .unsigned(UInt64(cpu))),
                                    ("value", decode(valueType, UnsafeRawBufferPointer(rebasing: value[offset..<(offset + slot)]), bitOffset: 0))])
        }
        rows.write(.structured(decodedKey), .structured(.array(values)))
    }

    private func type(_ id: UInt32) -> BTF.TypeInfo? {
        if let known = types[id] { return known }
        let found = btf.type(id)
        types[id] = found
        return found
    }

    /// The value of type `id` in `bytes`; `bitOffset` (0–7) where a member starts inside its first byte.
    private func decode(_ id: UInt32, _ bytes: UnsafeRawBufferPointer, bitOffset: Int) -> StructuredValue {
        guard let type = type(id) else { return .string("(no type \(id))") }
        switch type {
        case .integer(_, let size, let encoding, let bits, let intOffset):
            guard size <= bytes.count else { return .string("(truncated)") }
            if bitOffset != 0 || intOffset != 0 || bits % 8 != 0 || bits == 128 {
                return Self.bitfield(bytes, bitOffset: bitOffset + intOffset, bits: bits)
            }
            return Self.integer(bytes, size: bits / 8, encoding: encoding)
        case .pointer:
            return bytes.count >= 8 ? .unsigned(bytes.loadUnaligned(as: UInt64.self)) : .string("(truncated)")
        case .array(let element, let count):
            if let text = string(element: element, count: count, bytes) { return .string(text) }
            guard let size = btf.size(of: element), size * count <= bytes.count else { return .string("(truncated)") }
            return .array((0..<count).map { decode(element, UnsafeRawBufferPointer(rebasing: bytes[($0 * size)...]), bitOffset: 0) })
        case .structure(let members), .union(let members):
            return .object(members.map { member in
                let start = member.bitOffset / 8
                guard start <= bytes.count else { return (member.name, .string("(truncated)")) }
                let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
                return (member.name, member.bitfieldSize > 0
                        ? Self.bitfield(rest, bitOffset: member.bitOffset % 8, bits: member.bitfieldSize)
                        : decode(member.type, rest, bitOffset: member.bitOffset % 8))
            })
        case .enumeration(let size, let cases):
            guard [1, 2, 4, 8].contains(size), size <= bytes.count, case .signed(let value) = Self.integer(bytes, size: size, encoding: .signed) else {
                return .string("(truncated)")
            }
            return cases.first { $0.value == value }.map { .string($0.name) } ?? .signed(value)
        case .float(let size):
            guard size <= bytes.count else { return .string("(truncated)") }
            return size == 4 ? .string("\(bytes.loadUnaligned(as: Float.self))")
                : size == 8 ? .string("\(bytes.loadUnaligned(as: Double.self))") : Self.hexBytes(UnsafeRawBufferPointer(rebasing: bytes.prefix(size)))
        case .alias(let target, _):
            return decode(target, bytes, bitOffset: bitOffset)
        case .variable(let name, let target):
            return .object([(name, decode(target, bytes, bitOffset: bitOffset))])
        case .section(let name, let variables):
            return .object([(name, .array(variables.map { variable in
                variable.offset <= bytes.count ? decode(variable.type, UnsafeRawBufferPointer(rebasing: bytes[variable.offset...]), bitOffset: 0)
                    : .string("(truncated)")
            }))])
        case .void, .unsupported:
            return Self.hexBytes(bytes)
        }
    }

    /// A char array holding a NUL-terminated printable string, as bpftool shows it; nil otherwise.
    private func string(element: UInt32, count: Int, _ bytes: UnsafeRawBufferPointer) -> String? {
        var id = element
        while case .alias(let target, false)? = type(id) { id = target }  // const/volatile, not typedefs (as bpftool)
        guard count > 0, count <= bytes.count, case .integer(let name, 1, let encoding, _, _)? = type(id),
              encoding == .char || name == "char" else { return nil }
        var text: [UInt8] = []
        for byte in bytes.prefix(count) {
            if byte == 0 { return String(decoding: text, as: UTF8.self) }
            guard (0x20..<0x7f).contains(byte) else { return nil }
            text.append(byte)
        }
        return nil
    }

    private static func integer(_ bytes: UnsafeRawBufferPointer, size: Int, encoding: BTF.IntegerEncoding) -> StructuredValue {
        let unsigned: UInt64 = switch size {
        case 1: UInt64(bytes[0])
        case 2: UInt64(bytes.loadUnaligned(as: UInt16.self))
        case 4: UInt64(bytes.loadUnaligned(as: UInt32.self))
        default: bytes.loadUnaligned(as: UInt64.self)
        }
        switch encoding {
        case .unsigned: return .unsigned(unsigned)
        case .bool: return .bool(unsigned != 0)
        case .signed:
            let shift = UInt64(64 - size * 8)
            return .signed(Int64(bitPattern: unsigned << shift) >> shift)
        case .char:
            let byte = UInt8(truncatingIfNeeded: unsigned)
            return .string(String(UnicodeScalar(byte)))
        }
    }

    /// `bits` bits from `bitOffset` on (little-endian), as bpftool prints bitfields: `0x…`.
    private static func bitfield(_ bytes: UnsafeRawBufferPointer, bitOffset: Int, bits: Int) -> StructuredValue {
        guard bits > 0, bits <= 128, (bitOffset + bits + 7) / 8 <= bytes.count else { return .string("(truncated)") }
        var low: UInt64 = 0, high: UInt64 = 0
        for bit in 0..<bits {
            let source = bitOffset + bit
            guard bytes[source / 8] >> (source % 8) & 1 == 1 else { continue }
            if bit < 64 { low |= 1 << UInt64(bit) } else { high |= 1 << UInt64(bit - 64) }
        }
        let lowHex = String(low, radix: 16)
        return .string(high == 0 ? "0x" + lowHex : "0x" + String(high, radix: 16) + String(repeating: "0", count: 16 - lowHex.count) + lowHex)
    }

    /// Bytes without a type, as bpftool's `key`/`value` arrays show them.
    private static func hexBytes(_ bytes: UnsafeRawBufferPointer) -> StructuredValue {
        .array(bytes.map { .string("0x" + (($0 < 16) ? "0" : "") + String($0, radix: 16)) })
    }
}
