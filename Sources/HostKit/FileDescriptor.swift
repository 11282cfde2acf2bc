import Glibc

/// A file descriptor owned by exactly one value: closed once, when it is released.
public final class FileDescriptor: @unchecked Sendable {
    /// The raw descriptor, valid while this object lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// Opens `path` (read-only unless `flags` say otherwise) with close-on-exec.
    public convenience init(opening path: String, flags: Int32 = O_RDONLY, operation: String) throws {
        let fd = open(path, flags | O_CLOEXEC)
        if fd < 0 { throw SystemError(operation, path, errno: Glibc.errno) }
        self.init(owning: fd)
    }

    deinit {
        close(rawValue)
    }
}
