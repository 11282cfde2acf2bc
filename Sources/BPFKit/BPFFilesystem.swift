import CLibBPF
import CNetfenceShim
import Foundation
import Glibc
import HostKit

/// The kind of kernel object behind a pin on bpffs.
public enum PinnedObjectKind: String, Sendable {
    case program, map, link
}

/// An object pinned on bpffs, with an owned descriptor to it.
public struct PinnedObject: @unchecked Sendable {
    public let path: String
    public let kind: PinnedObjectKind
    public let descriptor: FileDescriptor
}

/// bpffs: checking and mounting it, and walking what is pinned below a folder.
public enum BPFFilesystem {
    /// Where bpffs is mounted on a systemd host.
    public static let defaultMountPoint = "/sys/fs/bpf"

    /// Whether `path` lies on a mounted bpffs.
    public static func isBPFFilesystem(_ path: String) -> Bool {
        var type = 0
        return nf_statfs_type(path, &type) == 0 && UInt(bitPattern: type) == NF_BPF_FS_MAGIC
    }

    /// Mounts bpffs at `mountPoint` unless one is already there.
    public static func mountIfNeeded(at mountPoint: String = defaultMountPoint) throws {
        if isBPFFilesystem(mountPoint) { return }
        try makeDirectories(mountPoint)
        if mount("bpf", mountPoint, "bpf", 0, nil) != 0 {
            throw SystemError("mount bpffs at", mountPoint, errno: errno)
        }
    }

    /// Creates `path` and the folders above it that are missing (`mkdir -p`).
    public static func makeDirectories(_ path: String) throws {
        var built = ""
        for component in path.split(separator: "/") {
            built += "/\(component)"
            if mkdir(built, 0o755) != 0 && errno != EEXIST { throw SystemError("create folder", built, errno: errno) }
        }
    }

    /// What `removePins` did in one folder.
    public struct Removal: Sendable, Equatable {
        /// Pins removed, as paths.
        public var removed: [String] = []
        /// Entries left because they are not among the names given (another tool's, or newer).
        public var kept: [String] = []
    }

    /// Unpins `names` in `folder` (below `root`), never through a symlink: the
    /// folder is opened without following one and each entry must be a pin
    /// itself. Removes the folder when nothing else is left in it.
    public static func removePins(_ names: Set<String>, in folder: String, under root: String) throws -> Removal {
        var removal = Removal()
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if rootFD < 0 { throw SystemError("open pin root", root, errno: errno) }
        defer { close(rootFD) }
        let folderFD = openat(rootFD, folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if folderFD < 0 {
            if errno == ENOENT { return removal }
            throw SystemError("open pin folder", "\(root)/\(folder)", errno: errno)
        }
        guard let listing = fdopendir(dup(folderFD)) else { close(folderFD); throw SystemError("list", "\(root)/\(folder)", errno: errno) }
        defer { closedir(listing); close(folderFD) }
        for name in entryNames(listing).sorted() {
            var info = stat()
            let path = "\(root)/\(folder)/\(name)"
            guard names.contains(name), fstatat(folderFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFREG else {
                removal.kept.append(path)
                continue
            }
            if unlinkat(folderFD, name, 0) != 0 { throw SystemError("unpin", path, errno: errno) }
            removal.removed.append(path)
        }
        if removal.kept.isEmpty, unlinkat(rootFD, folder, AT_REMOVEDIR) != 0, errno != ENOENT, errno != ENOTEMPTY {
            throw SystemError("remove folder", "\(root)/\(folder)", errno: errno)
        }
        return removal
    }

    /// Every program, map and link pinned at or below `root`, sorted by path.
    /// A missing root holds nothing; symlinks are not followed; entries that are
    /// not BPF objects (or vanish mid-walk) are skipped.
    public static func pinnedObjects(under root: String) throws -> [PinnedObject] {
        try pinPaths(under: root).compactMap { path in
            let fd = bpf_obj_get(path)
            // ENOENT: gone meanwhile; EACCES/EINVAL/EPERM on a root-owned walk: a file that is no BPF object
            if [-ENOENT, -EACCES, -EINVAL, -EPERM].contains(fd) { return nil }
            try check(fd, "open pinned object", path)
            let descriptor = FileDescriptor(owning: fd)
            guard let kind = kind(of: descriptor) else { return nil }
            return PinnedObject(path: path, kind: kind, descriptor: descriptor)
        }
    }

    /// Paths of the regular files at or below `root` (pins are regular files on bpffs), sorted.
    static func pinPaths(under root: String) -> [String] {
        var info = stat()
        guard lstat(root, &info) == 0 else { return [] }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return [root]
        case S_IFDIR: break
        default: return []
        }
        var paths: [String] = []
        var folders = [root]
        while let folder = folders.popLast() {
            guard let listing = opendir(folder) else { continue }
            defer { closedir(listing) }
            for name in entryNames(listing) {
                guard lstat("\(folder)/\(name)", &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: folders.append("\(folder)/\(name)")
                case S_IFREG: paths.append("\(folder)/\(name)")
                default: continue
                }
            }
        }
        return paths.sorted()
    }

    /// The names in an open directory listing, without `.` and `..`.
    private static func entryNames(_ listing: OpaquePointer) -> [String] {
        var names: [String] = []
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The map pinned at `path`, or nil when nothing is pinned there.
    public static func pinnedMap(at path: String) throws -> BPFMap? {
        let fd = bpf_obj_get(path)
        if fd == -ENOENT { return nil }
        try check(fd, "open pinned map", path)
        let descriptor = FileDescriptor(owning: fd)
        guard isMap(descriptor) else { throw SystemError("open pinned map", "\(path) (not a map)", errno: EINVAL) }
        return BPFMap(descriptor: descriptor)
    }

    /// Whether `descriptor` is a map, in one syscall (every command opens some 40 maps; `kind(of:)`
    /// walks /proc for each): the kernel checks a lookup's descriptor before it reads the key, so
    /// a lookup without one fails EINVAL for anything but a map, and otherwise for the missing key
    /// (EFAULT) or the kind of map (a ring buffer's ENOTSUPP).
    static func isMap(_ descriptor: FileDescriptor) -> Bool {
        bpf_map_lookup_elem(descriptor.rawValue, nil, nil) == 0 || ![EINVAL, EBADF].contains(errno)
    }

    /// The program pinned at `path`, or nil when nothing is pinned there.
    public static func pinnedProgram(at path: String) throws -> BPFProgram? {
        let fd = bpf_obj_get(path)
        if fd == -ENOENT { return nil }
        try check(fd, "open pinned program", path)
        let descriptor = FileDescriptor(owning: fd)
        guard kind(of: descriptor) == .program else { throw SystemError("open pinned program", "\(path) (not a program)", errno: EINVAL) }
        return BPFProgram(descriptor: descriptor)
    }

    /// The anon-inode name behind a BPF descriptor tells what it is.
    static func kind(of descriptor: FileDescriptor) -> PinnedObjectKind? {
        var buffer = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/self/fd/\(descriptor.rawValue)", &buffer, buffer.count)
        guard length > 0 else { return nil }
        switch String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) {
        case "anon_inode:bpf-prog": return .program
        case "anon_inode:bpf-map": return .map
        case "anon_inode:bpf_link": return .link
        default: return nil
        }
    }
}

/// Holds run-time statistics on (`BPF_ENABLE_STATS`) for as long as it lives:
/// the kernel counts runs and ns per program only while some descriptor is open.
public final class StatisticsSession {
    private let descriptor: FileDescriptor

    /// Enables run-time statistics until this object is released.
    public init() throws {
        let fd = try check(bpf_enable_stats(BPF_STATS_RUN_TIME), "enable", "BPF run-time statistics")
        descriptor = FileDescriptor(owning: fd)
    }
}
