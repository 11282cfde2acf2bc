import BPFKit
import Foundation
import HostKit

/// A throwaway network namespace holding veth pairs whose both ends stay
/// inside it: real interface indexes for BPF_PROG_TEST_RUN (the kernel
/// resolves `__sk_buff.ifindex`), connected to no real network. (This kernel
/// has no dummy driver.) Removed on ``remove()`` or deinit, or by a stop signal that ends the
/// process first (``Interruption``).
public final class SandboxInterfaces: @unchecked Sendable {
    public let namespace: NetworkNamespace
    /// Interface name → ifindex inside ``namespace``.
    public let ifindexes: [String: UInt32]
    private let removal: Interruption.Removal

    /// Creates namespace `name` with one veth per entry of `interfaces` (its peer
    /// is the name plus `p`, so names have at most 14 characters).
    public init(name: String, interfaces: [String]) throws {
        if FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/\(name)") {
            try IPRoute.run(["netns", "delete", name])
        }
        let removal = Interruption.register { IPRoute.deleteNamespace(name) }
        do {
            try IPRoute.run(["netns", "add", name])
            var indexes: [String: UInt32] = [:]
            for interface in interfaces {
                try IPRoute.run(["-n", name, "link", "add", interface, "type", "veth", "peer", "name", interface + "p"])
                try IPRoute.run(["-n", name, "link", "set", interface, "up"])
                let line = try IPRoute.run(["-n", name, "-o", "link", "show", "dev", interface])
                guard let index = line.split(separator: ":").first.flatMap({ UInt32($0) }) else {
                    throw IPRoute.Failure(command: "ip -n \(name) -o link show dev \(interface)", output: line)
                }
                indexes[interface] = index
            }
            namespace = try NetworkNamespace.named(name)
            ifindexes = indexes
            self.removal = removal
        } catch {
            removal.run()
            throw error
        }
    }

    /// Deletes the namespace and its interfaces. Once.
    public func remove() { removal.run() }

    deinit { remove() }
}
