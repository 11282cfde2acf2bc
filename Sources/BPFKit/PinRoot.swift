import Foundation
import Glibc
import HostKit

/// The bpffs folder netfence pins under, checked once: absolute, without `.`
/// or `..` components (so a check of one path and a write to another never
/// differ), and, before anything is created, on a mounted bpffs.
public struct PinRoot: Hashable, Sendable, CustomStringConvertible {
    /// The normalized path: `/sys/fs/bpf/netfence`, no trailing slash.
    public let path: String

    /// Why a root was refused, as one line.
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// `/sys/fs/bpf/netfence`: where netfence pins unless told otherwise.
    public static let standard = PinRoot(normalized: "\(BPFFilesystem.defaultMountPoint)/netfence")

    private init(normalized path: String) { self.path = path }

    /// Normalizes `text` (repeated and trailing slashes, `.` components); refuses
    /// an empty or relative path, `..`, and `/` itself.
    public init(_ text: String) throws(Invalid) {
        guard !text.isEmpty else { throw Invalid(description: "the pin root is empty; give an absolute path on bpffs such as /sys/fs/bpf/netfence") }
        guard text.hasPrefix("/") else { throw Invalid(description: "the pin root must be an absolute path on bpffs, such as /sys/fs/bpf/netfence") }
        guard !text.utf8.contains(0), text.utf8.count < Int(PATH_MAX) else { throw Invalid(description: "the pin root is not a usable path") }
        let components = text.split(separator: "/").filter { $0 != "." }
        guard !components.contains("..") else {
            throw Invalid(description: "the pin root must not contain '..'; name the folder directly")
        }
        guard !components.isEmpty else { throw Invalid(description: "the pin root cannot be /; give a folder on bpffs such as /sys/fs/bpf/netfence") }
        // Appended one by one through the Substring overload: `joined` and `+=` over substrings run
        // the generic code, a tenth of a millisecond of witness lookups in every new process.
        var normalized = ""
        for component in components {
            normalized.append("/")
            normalized.append(contentsOf: component)
        }
        path = normalized
    }

    public var description: String { path }

    /// The folder below the root: `maps`, `state`, `programs`.
    public func appending(_ component: String) -> String { "\(path)/\(component)" }

    /// Whether the root exists.
    public var exists: Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Checks that the root is a folder on a mounted bpffs, or, when it does not
    /// exist yet, that the nearest folder above it that exists is. Creates nothing.
    public func requireMounted() throws(Invalid) {
        // The root, then each folder above it: cut at the last slash (`joined` runs unspecialized,
        // witness lookups in every new process).
        var candidate = path
        while true {
            var info = stat()
            if lstat(candidate, &info) == 0 {
                if candidate == path {
                    guard info.st_mode & S_IFMT == S_IFDIR else {
                        throw Invalid(description: "\(path) is not a folder (netfence never follows a symlink at its pin root)")
                    }
                }
                guard BPFFilesystem.isBPFFilesystem(candidate) else {
                    throw Invalid(description: "\(path) is not on a mounted bpffs")
                }
                return
            }
            guard candidate != "/", let slash = candidate.utf8.lastIndex(of: UInt8(ascii: "/")) else {
                throw Invalid(description: "\(path) is not on a mounted bpffs")
            }
            candidate = slash == candidate.utf8.startIndex ? "/" : String(candidate[..<slash])
        }
    }
}
