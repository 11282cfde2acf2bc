import Datapath
import Foundation
import Glibc
import HostKit

/// A flow log on disk: JSON Lines appended to PATH, rotated by size (PATH.1 is
/// the newest full file, PATH.N the oldest kept), reopened on request (SIGHUP,
/// after logrotate moved it), and written exactly once across restarts.
///
/// Exactly once: beside the log, `.NAME.cursor` says up to which position of each
/// CPU's ring the events are in the log and how long PATH was then. It is replaced (write,
/// rename) after each write to PATH, and the rings' records are given back only
/// after that. A writer killed after writing lines but before the cursor leaves
/// lines the cursor does not cover: the next one cuts PATH back to the cursor's
/// length and reads those events again. One killed after the cursor but before
/// giving the records back skips, on restart, what the cursor covers.
///
/// Durability: a killed process loses nothing written (the page cache has it);
/// a file is fsync'd when it is rotated and when the writer closes, so a power
/// loss can take the lines of the current file since its last rotation.
public final class FlowLogFile {
    public let path: String
    let maxBytes: Int
    let maxFiles: Int
    let ringID: UInt32
    private var file: FileDescriptor
    private var inode: UInt64
    private(set) var size: Int
    /// Lines not written yet, and the rings' positions after the events among them.
    private var pending: [UInt8] = []
    private var pendingPosition: EventRingPosition
    /// The rings' positions after the events in the file.
    private var position: EventRingPosition
    /// The positions the last writer reached, when it wrote for these rings.
    public let resumePosition: EventRingPosition?
    /// Held while this writer lives: two writers of one log would split and repeat its lines.
    private let lock: FileDescriptor

    static let lockWaitNanoseconds: UInt64 = 1_000_000_000

    /// Opens (or creates) `path` to append events of the rings `ringID`, whose reader starts at
    /// `start`; a file reaching `maxBytes` is rotated, keeping `maxFiles` rotated files.
    public init(path: String, maxBytes: Int, maxFiles: Int, ringID: UInt32, start: EventRingPosition) throws {
        self.path = path
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
        self.ringID = ringID
        let lockPath = Self.sidePath(path, "lock")
        lock = try FileDescriptor(creating: lockPath, flags: O_WRONLY | O_CREAT, operation: "create the flow log's lock")
        // A writer lets go when its descriptor closes, but the lock stays held while any copy of it
        // lives: a child this process is spawning (another thread's) holds one until its exec closes
        // it. So a second's wait before "another netfence writes it".
        let deadline = HostClock.monotonic.nanoseconds + Self.lockWaitNanoseconds
        while flock(lock.rawValue, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            guard failure == EWOULDBLOCK || failure == EINTR, HostClock.monotonic.nanoseconds < deadline else {
                throw SystemError("lock the flow log", "\(path) (another netfence writes it)", errno: failure)
            }
            usleep(10_000)
        }
        (file, inode, size) = try Self.open(path)
        let cursor = Cursor.read(Self.cursorPath(path))
        if let cursor, cursor.ringID == ringID, cursor.position.cpus.count == start.cpus.count {
            resumePosition = cursor.position
            position = EventRingPosition(zip(cursor.position.cpus, start.cpus).map { max($0, $1) })
            if cursor.inode == inode && size > cursor.size {
                // Lines written after the cursor: their events are still in the rings, read again.
                if ftruncate(file.rawValue, off_t(cursor.size)) != 0 { throw SystemError("cut back to the last confirmed line", path, errno: errno) }
                size = cursor.size
            }
        } else {
            resumePosition = nil
            position = start
        }
        pendingPosition = position
        try writeCursor()
    }

    /// Adds one line (its newline included); `mark` is its event's place in the rings
    /// (nil: a line of no event, a loss or suppression report).
    public func append(_ line: UnsafeRawBufferPointer, endingAt mark: EventRingMark?) throws {
        if size > 0 || !pending.isEmpty, size + pending.count + line.count > maxBytes {
            try write()
            try rotate()
        }
        pending.append(contentsOf: line)
        if let mark { pendingPosition.advance(to: mark) }
    }

    /// Writes what was added, then the cursor: afterwards the rings may be given the records back.
    public func write() throws {
        guard !pending.isEmpty else { return }
        try pending.withUnsafeBytes { try file.writeAll($0, path: path) }
        size += pending.count
        pending.removeAll(keepingCapacity: true)
        position = pendingPosition
        try writeCursor()
    }

    /// Opens PATH anew (logrotate moved the file this one writes; SIGHUP says so).
    public func reopen() throws {
        try write()
        (file, inode, size) = try Self.open(path)
        try writeCursor()
    }

    /// Writes what is pending and makes the file durable.
    public func close() throws {
        try write()
        fsync(file.rawValue)
    }

    /// PATH becomes PATH.1, PATH.1 PATH.2 …; the oldest beyond `maxFiles` goes.
    private func rotate() throws {
        fsync(file.rawValue)
        unlink("\(path).\(maxFiles)")
        for index in stride(from: maxFiles - 1, through: 1, by: -1) {
            if rename("\(path).\(index)", "\(path).\(index + 1)") != 0, errno != ENOENT {
                throw SystemError("rotate", "\(path).\(index)", errno: errno)
            }
        }
        if rename(path, "\(path).1") != 0 { throw SystemError("rotate", path, errno: errno) }
        (file, inode, size) = try Self.open(path)
        try writeCursor()
    }

    private func writeCursor() throws {
        let cursor = Cursor(ringID: ringID, position: position, inode: inode, size: size)
        try cursor.write(to: Self.cursorPath(path))
    }

    private static func open(_ path: String) throws -> (FileDescriptor, UInt64, Int) {
        let file = try FileDescriptor(creating: path, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o640, operation: "open the flow log")
        var status = stat()
        if fstat(file.rawValue, &status) != 0 { throw SystemError("stat", path, errno: errno) }
        guard status.st_mode & S_IFMT == S_IFREG else { throw SystemError("write a flow log to", "\(path) (not a regular file)", errno: EINVAL) }
        return (file, UInt64(status.st_ino), Int(status.st_size))
    }

    /// `.NAME.cursor` beside PATH: hidden, so a shipper that tails `PATH*` does not read it.
    static func cursorPath(_ path: String) -> String { sidePath(path, "cursor") }

    /// `.NAME.SUFFIX` beside PATH.
    static func sidePath(_ path: String, _ suffix: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(suffix)").path
    }

    /// What the cursor file holds, one line of text.
    struct Cursor: Equatable {
        static let magic = "netfence-flow-log-cursor 2"
        let ringID: UInt32
        let position: EventRingPosition
        let inode: UInt64
        let size: Int

        var text: String { "\(Self.magic) ring=\(ringID) positions=\(position) inode=\(inode) size=\(size)\n" }

        static func read(_ path: String) -> Cursor? {
            guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 16,
                  let text = String(data: data, encoding: .utf8), text.hasPrefix(magic + " ") else { return nil }
            var fields: [String: String] = [:]
            for part in text.dropFirst(magic.count).split(whereSeparator: \.isWhitespace) {
                let pair = part.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
            }
            guard let ring = fields["ring"].flatMap({ UInt32($0) }), let position = fields["positions"].flatMap({ EventRingPosition($0) }),
                  let inode = fields["inode"].flatMap({ UInt64($0) }), let size = fields["size"].flatMap({ Int($0) }) else { return nil }
            return Cursor(ringID: ring, position: position, inode: inode, size: size)
        }

        /// Replaces the cursor file in one step: a reader sees the old one or this one.
        func write(to path: String) throws {
            let staged = path + ".next"
            let file = try FileDescriptor(creating: staged, operation: "write the flow log's cursor")
            try Array(text.utf8).withUnsafeBytes { try file.writeAll($0, path: staged) }
            if rename(staged, path) != 0 { throw SystemError("replace", path, errno: errno) }
        }
    }
}
