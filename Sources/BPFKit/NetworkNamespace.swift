import CNetfenceShim
import Foundation
import Glibc
import HostKit

/// A network namespace reachable from this process, by a name a person recognises.
public struct NetworkNamespace: Sendable, Hashable {
    /// `host` for the init namespace, the `ip netns` name, or `pid:N` for an unnamed one.
    public let name: String
    /// A path that opens it (`/run/netns/NAME`, `/proc/PID/ns/net`).
    public let path: String
    /// Whether this process already lives in it (no thread needs to enter it).
    public let isCurrent: Bool
    let inode: UInt64

    /// Where `ip netns add` bind-mounts named namespaces.
    public static let namedFolder = "/run/netns"

    /// The named namespace `name` (as `ip netns` knows it).
    public static func named(_ name: String) throws -> NetworkNamespace {
        let path = "\(namedFolder)/\(name)"
        guard let inode = inodeNumber(path) else {
            throw SystemError("find network namespace", name, errno: ENOENT)
        }
        return NetworkNamespace(name: name, path: path, isCurrent: inode == inodeNumber("/proc/self/ns/net"), inode: inode)
    }

    /// This process's namespace, then every named one, then those only some process holds.
    /// Each appears once; namespaces that cannot be opened are left out.
    public static func all() -> [NetworkNamespace] {
        var seen = Set<UInt64>()
        var result: [NetworkNamespace] = []
        let current = inodeNumber("/proc/self/ns/net")
        let initial = inodeNumber("/proc/1/ns/net")
        func add(_ name: String, _ path: String) {
            guard let inode = inodeNumber(path), seen.insert(inode).inserted else { return }
            let label = inode == initial ? "host" : name
            result.append(NetworkNamespace(name: label, path: path, isCurrent: inode == current, inode: inode))
        }
        add("self", "/proc/self/ns/net")
        let named = (try? FileManager.default.contentsOfDirectory(atPath: namedFolder)) ?? []
        for name in named.sorted() { add(name, "\(namedFolder)/\(name)") }
        let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in processes.compactMap({ Int($0) }).sorted() { add("pid:\(pid)", "/proc/\(pid)/ns/net") }
        return result
    }

    /// An open descriptor to the namespace, or nil when this process already lives in it.
    public func open() throws -> FileDescriptor? {
        isCurrent ? nil : try FileDescriptor(opening: path, operation: "open network namespace")
    }

    /// Runs `body` with the raw descriptor of `namespace` (-1: nil, or the one this process lives in),
    /// open until `body` returns: a descriptor object may otherwise be released, and its number closed
    /// (and reused), right after its last use in Swift — before the C call that was handed the number.
    public static func withDescriptor<T>(of namespace: NetworkNamespace?, _ body: (Int32) throws -> T) throws -> T {
        let descriptor = try namespace?.open()
        return try withExtendedLifetime(descriptor) { try body(descriptor?.rawValue ?? -1) }
    }

    static func inodeNumber(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }
}

extension NetworkNamespace {
    /// A socket created inside this namespace (it stays there whichever thread uses it).
    public func socket(domain: Int32, type: Int32, protocol: Int32 = 0) throws -> FileDescriptor {
        let fd = try Self.withDescriptor(of: self) { nf_socket_in_netns($0, domain, type, `protocol`) }
        try check(fd, "open socket in network namespace", name)
        return FileDescriptor(owning: fd)
    }
}

extension NetworkNamespace {
    /// The index of `interface` inside this namespace.
    public func interfaceIndex(_ interface: String) throws -> UInt32 {
        let index = try Self.withDescriptor(of: self) { nsfd in interface.withCString { nf_ifindex_in_netns(nsfd, $0) } }
        try check(index, "find interface", "\(interface) in network namespace \(name)")
        return UInt32(index)
    }

    /// The driver of `interface` in this process's namespace (`veth`, `bridge`), nil when there is no such interface.
    public static func driver(of interface: String) -> String? {
        var driver = [CChar](repeating: 0, count: 64)
        guard nf_interface_driver(interface, &driver, driver.count) == 0 else { return nil }
        return String(decoding: driver.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The `ip netns` name of this process's namespace: nil in the host's (the init
    /// namespace's, or one with no name when the init process's cannot be read, as in
    /// some containers); throws when it is neither the host's nor named.
    public static func currentName() throws -> String? {
        let current = inodeNumber("/proc/self/ns/net"), initial = inodeNumber("/proc/1/ns/net")
        guard current != initial else { return nil }
        let named = (try? FileManager.default.contentsOfDirectory(atPath: namedFolder)) ?? []
        if let name = named.sorted().first(where: { inodeNumber("\(namedFolder)/\($0)") == current }) { return name }
        guard initial == nil else {
            throw SystemError("name this process's network namespace", "(not the host's, and not under \(namedFolder))", errno: ENOENT)
        }
        return nil
    }

    /// This process's own namespace.
    public static var current: NetworkNamespace {
        NetworkNamespace(name: "host", path: "/proc/self/ns/net", isCurrent: true, inode: inodeNumber("/proc/self/ns/net") ?? 0)
    }
}
