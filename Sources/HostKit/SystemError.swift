import Glibc

/// A failed system or libbpf call: what was attempted, on which object, and the errno.
/// One type for both, so a caller matches an errno the same way whichever layer failed.
///
/// Its description is one line, `"open pinned object /sys/fs/bpf/x: No such file
/// or directory (ENOENT)"`, so the command layer can print it as it is.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    /// What was attempted, e.g. `"look up program"`.
    public let operation: String
    /// The object it was attempted on, e.g. `"id 42"` or a pin path.
    public let object: String
    /// The positive errno the kernel or libbpf returned.
    public let errno: Int32
    /// Extra context from libbpf (its last warning), if any.
    public let detail: String?

    /// An error for `operation` on `object` that failed with `errno` (sign ignored).
    public init(_ operation: String, _ object: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.object = object
        self.errno = abs(errno)
        self.detail = detail.flatMap { $0.isEmpty ? nil : $0 }
    }

    public var description: String {
        let base = "\(operation) \(object): \(Errno.describe(errno))"
        return detail.map { "\(base): \($0)" } ?? base
    }
}

/// Names and texts for errno values, including the kernel-internal ones
/// (ENOTSUPP = 524) that glibc's strerror does not know.
public enum Errno {
    /// The kernel's internal "operation not supported" code that BPF commands leak.
    public static let kernelNotSupported: Int32 = 524

    /// `"No such file or directory (ENOENT)"`.
    public static func describe(_ errno: Int32) -> String {
        if errno == kernelNotSupported { return "operation not supported by this kernel (ENOTSUPP)" }
        let text = String(cString: strerror(errno))
        return name(errno).map { "\(text) (\($0))" } ?? text
    }

    /// The symbolic name of `errno`, when it is one BPF calls return.
    public static func name(_ errno: Int32) -> String? {
        switch errno {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case ESRCH: "ESRCH"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case E2BIG: "E2BIG"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ERANGE: "ERANGE"
        case ENOSYS: "ENOSYS"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case ELOOP: "ELOOP"
        case EADDRINUSE: "EADDRINUSE"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case kernelNotSupported: "ENOTSUPP"
        default: nil
        }
    }
}
