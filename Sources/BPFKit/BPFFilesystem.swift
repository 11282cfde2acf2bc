import CLibBPF
import CNetfenceShim
import Foundation
import Glibc

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
        try? FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        if mount("bpf", mountPoint, "bpf", 0, nil) != 0 {
            throw BPFError("mount bpffs at", mountPoint, errno: errno)
        }
    }

    /// Every program, map and link pinned at or below `root`, sorted by path.
    /// A missing root holds nothing; objects that vanish mid-walk are skipped.
    public static func pinnedObjects(under root: String) throws -> [PinnedObject] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else { return [] }
        let paths: [String]
        if isDirectory.boolValue {
            guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
            paths = walker.compactMap { $0 as? String }.map { "\(root)/\($0)" }
        } else {
            paths = [root]
        }
        return try paths.sorted().compactMap { path in
            guard !isFolder(path) else { return nil }
            let fd = bpf_obj_get(path)
            if fd == -ENOENT { return nil }
            try check(fd, "open pinned object", path)
            let descriptor = FileDescriptor(owning: fd)
            guard let kind = kind(of: descriptor) else { return nil }
            return PinnedObject(path: path, kind: kind, descriptor: descriptor)
        }
    }

    /// The map pinned at `path`, or nil when nothing is pinned there.
    public static func pinnedMap(at path: String) throws -> BPFMap? {
        let fd = bpf_obj_get(path)
        if fd == -ENOENT { return nil }
        try check(fd, "open pinned map", path)
        let descriptor = FileDescriptor(owning: fd)
        guard kind(of: descriptor) == .map else { throw BPFError("open pinned map", "\(path) (not a map)", errno: EINVAL) }
        return BPFMap(descriptor: descriptor)
    }

    /// The program pinned at `path`, or nil when nothing is pinned there.
    public static func pinnedProgram(at path: String) throws -> BPFProgram? {
        let fd = bpf_obj_get(path)
        if fd == -ENOENT { return nil }
        try check(fd, "open pinned program", path)
        let descriptor = FileDescriptor(owning: fd)
        guard kind(of: descriptor) == .program else { throw BPFError("open pinned program", "\(path) (not a program)", errno: EINVAL) }
        return BPFProgram(descriptor: descriptor)
    }

    private static func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The anon-inode name behind a BPF descriptor tells what it is.
    static func kind(of descriptor: FileDescriptor) -> PinnedObjectKind? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(descriptor.rawValue)") else {
            return nil
        }
        switch target {
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

/// The effective capabilities of this process, read from /proc/self/status.
public struct Capabilities: Sendable {
    public let effective: UInt64

    /// The capabilities this process has now.
    public static func current() -> Capabilities {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
        let hex = line.map { $0.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces) } ?? "0"
        return Capabilities(effective: UInt64(hex, radix: 16) ?? 0)
    }

    private func has(_ bit: UInt64) -> Bool { effective & (1 << bit) != 0 }
    /// CAP_SYS_ADMIN (21): listing every object on the host, and anything CAP_BPF allows.
    public var sysAdmin: Bool { has(21) }
    /// CAP_BPF (39): loading programs and creating maps.
    public var bpf: Bool { has(39) || sysAdmin }
}
