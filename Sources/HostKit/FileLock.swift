import Foundation
import Glibc

/// An advisory lock on a directory or a file (`flock(2)`): held while this object lives,
/// dropped by the kernel when the holder exits, however it exits.
public final class FileLock {
    public enum Mode: Sendable {
        /// Readers that need a view no writer changes under them.
        case shared
        /// The one writer.
        case exclusive

        var operation: Int32 { self == .shared ? LOCK_SH : LOCK_EX }
    }

    /// Why the lock was not taken.
    public enum Failure: Error, CustomStringConvertible {
        /// Another process held it for the whole wait; `holder` describes it when /proc/locks names it.
        case timedOut(path: String, waited: Double, holder: String?)
        case system(SystemError)

        public var description: String {
            switch self {
            case .timedOut(let path, let waited, let holder):
                "\(holder ?? "another process") holds the lock on \(path); gave up after \(Self.seconds(waited))"
            case .system(let error): error.description
            }
        }

        public static func seconds(_ value: Double) -> String {
            value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
        }
    }

    public let path: String
    public let mode: Mode
    private let descriptor: FileDescriptor

    private init(path: String, mode: Mode, descriptor: FileDescriptor) {
        self.path = path
        self.mode = mode
        self.descriptor = descriptor
    }

    /// Locks the directory `path` (never through a symlink), waiting up to
    /// `timeout` seconds for a holder to let go. Locks the directory the path
    /// names once the lock is held: one removed and made again meanwhile is
    /// locked anew, so two callers never hold "the" lock on different inodes.
    public static func acquire(directory path: String, mode: Mode, timeout: Double) throws(Failure) -> FileLock {
        try acquire(path, opening: O_DIRECTORY, mode: mode, timeout: timeout)
    }

    /// Locks the file `path` (a pinned BPF map, say) as `acquire(directory:)` locks a directory.
    public static func acquire(file path: String, mode: Mode, timeout: Double) throws(Failure) -> FileLock {
        try acquire(path, opening: 0, mode: mode, timeout: timeout)
    }

    private static func acquire(_ path: String, opening flags: Int32, mode: Mode, timeout: Double) throws(Failure) -> FileLock {
        let deadline = HostClock.monotonic.nanoseconds + UInt64(max(0, timeout) * 1e9)
        var pause: useconds_t = 1_000
        while true {
            let fd = open(path, O_RDONLY | flags | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 { throw .system(SystemError("open for locking", path, errno: errno)) }
            let descriptor = FileDescriptor(owning: fd)
            if flock(fd, mode.operation | LOCK_NB) == 0 {
                if sameInode(fd, path) { return FileLock(path: path, mode: mode, descriptor: descriptor) }
                continue  // replaced while we waited: lock what the path names now
            }
            guard errno == EWOULDBLOCK || errno == EINTR else { throw .system(SystemError("lock", path, errno: errno)) }
            let now = HostClock.monotonic.nanoseconds
            if now >= deadline { throw .timedOut(path: path, waited: timeout, holder: holder(of: fd)) }
            usleep(min(pause, useconds_t((deadline - now) / 1_000) + 1))
            pause = min(pause * 2, 20_000)
        }
    }

    /// Whether someone holds the lock on the directory `path` in a mode that excludes `mode` now
    /// (one try, no wait; false when the directory cannot be opened).
    public static func isHeld(directory path: String, against mode: Mode = .exclusive) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, mode.operation | LOCK_NB) != 0 && errno == EWOULDBLOCK
    }

    /// Whether the path still names the directory this lock holds (one removed and made again is another).
    public var namesItsPath: Bool { Self.sameInode(descriptor.rawValue, path) }

    private static func sameInode(_ fd: Int32, _ path: String) -> Bool {
        var opened = stat(), named = stat()
        return fstat(fd, &opened) == 0 && lstat(path, &named) == 0 && opened.st_dev == named.st_dev && opened.st_ino == named.st_ino
    }

    /// Who holds a lock on the file or directory `path` now (`holder(of:)`), or nil: nobody, or it cannot be opened.
    public static func holder(of path: String) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return holder(of: fd)
    }

    /// `pid 4242 (netfence loader apply -f big.yaml)`: who holds a lock on fd's inode, from /proc/locks.
    static func holder(of fd: Int32) -> String? {
        var info = stat()
        guard fstat(fd, &info) == 0, let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return nil }
        let inode = "\(String(major(info.st_dev), radix: 16, uppercase: false).leftPadded(2)):"
            + "\(String(minor(info.st_dev), radix: 16, uppercase: false).leftPadded(2)):\(info.st_ino)"
        for line in locks.split(separator: "\n") {
            // 1: FLOCK  ADVISORY  WRITE 4242 00:2a:1234 0 EOF
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", fields[5] == inode, let pid = Int32(fields[4]), pid > 0 else { continue }
            let command = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")))
                .map { String(decoding: $0, as: UTF8.self).split(separator: "\0").map(String.init) } ?? []
            var words = Array(command.prefix(6))
            if let program = words.first { words[0] = (program as NSString).lastPathComponent }
            return words.isEmpty ? "pid \(pid)" : "pid \(pid) (\(words.joined(separator: " ")))"
        }
        return nil
    }

    private static func major(_ device: dev_t) -> UInt32 { UInt32((device >> 8) & 0xfff) | UInt32((device >> 32) & ~0xfff) }
    private static func minor(_ device: dev_t) -> UInt32 { UInt32(device & 0xff) | UInt32((device >> 12) & ~0xff) }
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
