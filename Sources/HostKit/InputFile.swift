import Glibc

/// A whole input read as bytes, however it arrives: a file, standard input,
/// a pipe or FIFO (`-f <(…)`), `/dev/null`. Reading stops one byte past
/// `limit`, so a huge or endless input costs at most that much memory.
public enum InputFile {
    /// What was read: every byte, or `limit + 1` of them when there were more.
    public struct Contents: Sendable {
        public let bytes: [UInt8]
        /// More bytes followed than `limit`.
        public let truncated: Bool
    }

    /// Reads `path` (`-`: standard input).
    public static func read(_ path: String, limit: Int) throws -> Contents {
        let fd = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SystemError("open", path, errno: errno) }
        defer { if fd != STDIN_FILENO { close(fd) } }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while bytes.count <= limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path == "-" ? "standard input" : path, errno: errno)
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        let truncated = bytes.count > limit
        if truncated { bytes.removeLast(bytes.count - limit - 1) }
        return Contents(bytes: bytes, truncated: truncated)
    }
}
