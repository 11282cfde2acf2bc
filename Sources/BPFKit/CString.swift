/// Reads a fixed-size C char array (imported as a tuple) up to its first NUL.
func string<T>(fromCArray array: T) -> String {
    withUnsafeBytes(of: array) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// A zero-filled value of a C struct, padding included, for kernel info calls.
func zeroed<T>(_ type: T.Type) -> T {
    let pointer = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    defer { pointer.deallocate() }
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
    return pointer.load(as: T.self)
}

/// Runs `body` with a pointer to a zero-filled `T`. libbpf option structs must be
/// passed this way: a Swift value may carry dirty tail padding, which libbpf
/// rejects with EINVAL ("has non-zero extra bytes") in release builds.
func withZeroedPointer<T, R>(to type: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    defer { raw.deallocate() }
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
    return try body(raw.bindMemory(to: T.self, capacity: 1))
}
