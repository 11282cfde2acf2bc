import BPFKit
import Foundation
import Glibc
import HostKit

/// A throwaway node and pod: two network namespaces joined by a veth pair, the
/// pod's end named `eth0`, the node's end the pod's "host veth" where netfence's
/// programs go. Everything lives inside namespaces this type created, and
/// ``remove()`` (also run on deinit) deletes them, which deletes the veth and
/// any tc filters with it.
public final class PodNetwork: @unchecked Sendable {
    public let node: NetworkNamespace
    public let pod: NetworkNamespace
    /// The host veth, in the node namespace.
    public let hostInterface: String
    /// The pod's interface, in the pod namespace.
    public let podInterface = "eth0"
    public let nodeAddress: String
    public let podAddress: String
    private var removed = false
    private let removal = NSLock()

    /// Creates `NAME-node` and `NAME-pod` with `hostInterface` ↔ eth0 and the
    /// two addresses on a /30 (use the test range 198.18.0.0/15). Names that
    /// already exist (a run killed earlier) are replaced.
    public init(name: String, hostInterface: String, nodeAddress: String, podAddress: String) throws {
        let nodeName = "\(name)-node", podName = "\(name)-pod"
        for stale in [nodeName, podName] where FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/\(stale)") {
            try IPRoute.run(["netns", "delete", stale])
        }
        try IPRoute.run(["netns", "add", nodeName])
        do {
            try IPRoute.run(["netns", "add", podName])
            try IPRoute.run(["-n", nodeName, "link", "add", hostInterface, "type", "veth", "peer", "name", "eth0", "netns", podName])
            try IPRoute.run(["-n", nodeName, "addr", "add", "\(nodeAddress)/30", "dev", hostInterface])
            try IPRoute.run(["-n", podName, "addr", "add", "\(podAddress)/30", "dev", "eth0"])
            for (namespace, interface) in [(nodeName, hostInterface), (nodeName, "lo"), (podName, "eth0"), (podName, "lo")] {
                try IPRoute.run(["-n", namespace, "link", "set", interface, "up"])
            }
            node = try NetworkNamespace.named(nodeName)
            pod = try NetworkNamespace.named(podName)
        } catch {
            IPRoute.deleteNamespace(nodeName)
            IPRoute.deleteNamespace(podName)
            throw error
        }
        self.hostInterface = hostInterface
        self.nodeAddress = nodeAddress
        self.podAddress = podAddress
    }

    /// Deletes both namespaces (and with them the veth pair and its filters).
    public func remove() {
        let alreadyRemoved = removal.withLock {
            defer { removed = true }
            return removed
        }
        guard !alreadyRemoved else { return }
        IPRoute.deleteNamespace(node.name)
        IPRoute.deleteNamespace(pod.name)
    }

    deinit { remove() }

    /// Sends `count` UDP datagrams of `size` bytes from the pod to the node's
    /// address (nothing listens there: the node answers ICMP port unreachable,
    /// so both directions of the host veth see packets).
    public func sendUDPFromPod(count: Int, size: Int = 64, port: UInt16 = 9) throws {
        let socket = try pod.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, nodeAddress, &address.sin_addr)
        let payload = [UInt8](repeating: 0x6e, count: size)
        for _ in 0..<count {
            let sent = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(socket.rawValue, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if sent < 0, errno != ECONNREFUSED { throw SystemError("send UDP datagram to", nodeAddress, errno: errno) }
            usleep(20_000)
        }
    }
}
