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

    /// Creates (or opens) `path` for writing with close-on-exec; a new file gets `mode`.
    public convenience init(creating path: String, flags: Int32 = O_WRONLY | O_CREAT | O_TRUNC, mode: mode_t = 0o600, operation: String) throws {
        let fd = open(path, flags | O_CLOEXEC, mode)
        if fd < 0 { throw SystemError(operation, path, errno: Glibc.errno) }
        self.init(owning: fd)
    }

    /// Writes all of `bytes` (a write cut short by a signal or a pipe's room goes on); `path` names the file in an error.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = write(rawValue, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if Glibc.errno == EINTR { continue }
                throw SystemError("write", path, errno: Glibc.errno)
            }
            offset += written
        }
    }

    deinit {
        close(rawValue)
    }
}
