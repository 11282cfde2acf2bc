import BPFKit
import Foundation
import Glibc
import HostKit

/// A throwaway node with pods: a node namespace that routes between pod
/// namespaces, each joined to it by a veth pair (the node end is the pod's host
/// veth). Addresses from the test ranges: pod i is the second address of the
/// i-th /30 from 198.18.`subnet`.0 (64 per third octet) and 2001:db8:`subnet`:i::2. Everything lives in namespaces this type created and
/// goes with ``remove()`` (also run on deinit, unless ``keep()`` said to leave it).
public final class ClusterNetwork: @unchecked Sendable {
    public struct Pod: Sendable {
        public let namespace: NetworkNamespace
        /// The host veth, in the node namespace.
        public let hostInterface: String
        public let ipv4: String
        public let ipv6: String
    }

    public let node: NetworkNamespace
    public let pods: [Pod]

    /// `prefix` at most 10 characters (interface names are prefix + "h" + index).
    public init(prefix: String, pods count: Int, subnet: Int) throws {
        let nodeName = "\(prefix)-node"
        // Registered before the first namespace is made: a stop half-way through removes what was.
        let every = [nodeName] + (0..<count).map { "\(prefix)-p\($0)" }
        let removal = Interruption.register { every.forEach(IPRoute.deleteNamespace) }
        IPRoute.deleteNamespace(nodeName)
        do {
            try IPRoute.run(["netns", "add", nodeName])
            try Self.sysctl(nodeName, [("net/ipv4/ip_forward", 1), ("net/ipv6/conf/all/forwarding", 1)] + Self.noDAD)
            var pods: [Pod] = []
            for index in 0..<count {
                let podName = "\(prefix)-p\(index)", host = "\(prefix)h\(index)"
                IPRoute.deleteNamespace(podName)
                try IPRoute.run(["netns", "add", podName])
                try Self.sysctl(podName, Self.noDAD)
                let (octet, base) = (subnet + index / 64, index % 64 * 4)
                let (node4, pod4) = ("198.18.\(octet).\(base + 1)", "198.18.\(octet).\(base + 2)")
                // Written as RFC 5952 has it (what tools print back): no zero group before `::`.
                let net6 = index == 0 ? "2001:db8:\(subnet):" : "2001:db8:\(subnet):\(index):"
                let (node6, pod6) = ("\(net6):1", "\(net6):2")
                try IPRoute.run(["-n", nodeName, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", podName])
                try IPRoute.run(["-n", nodeName, "addr", "add", "\(node4)/30", "dev", host])
                try IPRoute.run(["-n", nodeName, "addr", "add", "\(node6)/64", "dev", host, "nodad"])
                try IPRoute.run(["-n", podName, "addr", "add", "\(pod4)/30", "dev", "eth0"])
                try IPRoute.run(["-n", podName, "addr", "add", "\(pod6)/64", "dev", "eth0", "nodad"])
                for (namespace, interface) in [(nodeName, host), (podName, "eth0"), (podName, "lo")] {
                    try IPRoute.run(["-n", namespace, "link", "set", interface, "up"])
                }
                try IPRoute.run(["-n", podName, "route", "add", "default", "via", node4])
                try IPRoute.run(["-n", podName, "-6", "route", "add", "default", "via", node6])
                pods.append(Pod(namespace: try NetworkNamespace.named(podName), hostInterface: host, ipv4: pod4, ipv6: pod6))
            }
            try IPRoute.run(["-n", nodeName, "link", "set", "lo", "up"])
            try Self.waitForIPv6(pods.indices.flatMap { [(nodeName, "\(prefix)h\($0)"), ("\(prefix)-p\($0)", "eth0")] })
            node = try NetworkNamespace.named(nodeName)
            self.pods = pods
            self.removal = removal
        } catch {
            removal.run()
            throw error
        }
    }

    /// A veth's carrier reaches IPv6 through the kernel's linkwatch, which batches events up to
    /// a second: until then the interface is operationally down, has no link-local address and
    /// answers no neighbour solicitation (IPv4 works at once). Waits for a link-local address on
    /// every end, so the first IPv6 packet of a test is not lost to readiness.
    static func waitForIPv6(_ interfaces: [(namespace: String, interface: String)], timeout: Duration = .seconds(5)) throws {
        var waiting = interfaces
        let deadline = ContinuousClock.now + timeout
        while !waiting.isEmpty {
            waiting = try waiting.filter { try IPRoute.run(["-n", $0.namespace, "-6", "-o", "addr", "show", "dev", $0.interface, "scope", "link"]).isEmpty }
            guard !waiting.isEmpty else { return }
            guard ContinuousClock.now < deadline else {
                throw IPRoute.Failure(command: "wait for IPv6 on \(waiting.map { "\($0.interface)@\($0.namespace)" }.joined(separator: ", "))",
                                      output: "no link-local address after \(timeout)")
            }
            usleep(20_000)
        }
    }

    /// Deletes every namespace (and with them the veths and filters), also when a stop signal
    /// ends the process first (``Interruption``). Once.
    public func remove() { removal.run() }

    private let removal: Interruption.Removal

    /// Leaves the namespaces in place when this value goes: someone wants to look around.
    public func keep() { removal.forget() }

    deinit { remove() }

    /// Without duplicate address detection, link-local addresses (which neighbour
    /// discovery needs) work at once instead of after about a second.
    static let noDAD = [("net/ipv6/conf/all/accept_dad", 0), ("net/ipv6/conf/default/accept_dad", 0)]

    /// Writes each /proc/sys key inside `namespace` (procfs shows the opener's
    /// namespace; nsenter keeps this process's mounts as they are).
    static func sysctl(_ namespace: String, _ keys: [(key: String, value: Int)]) throws {
        let result = try ChildProcess.run("/usr/bin/nsenter", ["--net=\(NetworkNamespace.namedFolder)/\(namespace)", "/bin/sh", "-c",
                                                               keys.map { "echo \($0.value) > /proc/sys/\($0.key)" }.joined(separator: " && ")])
        guard result.status == 0 else {
            throw IPRoute.Failure(command: "nsenter sysctl \(keys.map(\.key).joined(separator: " "))", output: result.output)
        }
    }
}
