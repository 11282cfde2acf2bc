/// Builds a key or value in the host byte order the BPF programs use.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    public mutating func append(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

    public mutating func pad(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }

    /// Pads to exactly `size` bytes (the ABI's struct size).
    public mutating func pad(toSize size: Int) { pad(size - bytes.count) }
}

/// Reads a key or value the BPF programs wrote; never traps on short input.
public struct ByteReader {
    @usableFromInline let bytes: [UInt8]

    /// A reader over `bytes`; every read is bounds-checked.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// A host-order integer at `offset`, or nil past the end. (Inlinable, as the
    /// rest: generic across modules it would look up its type's metadata per call.)
    @inlinable
    public func integer<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset + MemoryLayout<T>.size <= bytes.count else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// `count` bytes at `offset`, or nil past the end.
    @inlinable
    public func slice(at offset: Int, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset + count <= bytes.count else { return nil }
        return Array(bytes[offset..<(offset + count)])
    }

    /// The 16-byte address at `offset`, or nil past the end.
    @inlinable
    public func address(at offset: Int) -> IPAddress? {
        guard offset >= 0, offset + 16 <= bytes.count else { return nil }
        return bytes.withUnsafeBytes { IPAddress($0, at: offset) }
    }

    /// The UTF-8 text of `count` bytes at `offset`, or nil past the end.
    @inlinable
    public func text(at offset: Int, count: Int) -> String? {
        guard offset >= 0, count >= 0, offset + count <= bytes.count else { return nil }
        return bytes.withUnsafeBufferPointer { String(decoding: $0[offset..<(offset + count)], as: UTF8.self) }
    }
}
