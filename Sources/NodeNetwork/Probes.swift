import BPFKit
import Foundation
import Glibc
import HostKit

/// Real traffic between namespaces: a TCP connect, a UDP request answered by an
/// echo server, an ICMP echo. Each probe says whether the exchange completed
/// within its timeout; nothing waits longer.
public enum Probe: String, Sendable, CaseIterable, CustomStringConvertible {
    case tcp, udp, icmp
    public var description: String { rawValue }
}

/// A TCP and a UDP echo server on one port inside a namespace, served by a
/// background thread until ``stop()``.
public final class ProbeServer: @unchecked Sendable {
    public let port: UInt16
    private let tcp: FileDescriptor
    private let udp: FileDescriptor
    private let tcp6: FileDescriptor
    private let udp6: FileDescriptor
    private var running = true
    private let lock = NSLock()
    private var thread: Thread?

    /// Listens on every address of `namespace` (IPv4 and IPv6) at `port`.
    public init(in namespace: NetworkNamespace, port: UInt16) throws {
        self.port = port
        tcp = try Self.bound(namespace, AF_INET, Int32(SOCK_STREAM.rawValue), port)
        udp = try Self.bound(namespace, AF_INET, Int32(SOCK_DGRAM.rawValue), port)
        tcp6 = try Self.bound(namespace, AF_INET6, Int32(SOCK_STREAM.rawValue), port)
        udp6 = try Self.bound(namespace, AF_INET6, Int32(SOCK_DGRAM.rawValue), port)
        listen(tcp.rawValue, 64)
        listen(tcp6.rawValue, 64)
        let thread = Thread { [self] in serve() }
        self.thread = thread
        thread.start()
    }

    private static func bound(_ namespace: NetworkNamespace, _ family: Int32, _ type: Int32, _ port: UInt16) throws -> FileDescriptor {
        let socket = try namespace.socket(domain: family, type: type)
        var one: Int32 = 1
        setsockopt(socket.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 { setsockopt(socket.rawValue, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var storage = SocketAddress.any(family: family, port: port)
        let result = storage.withSockaddr { bind(socket.rawValue, $0, $1) }
        if result != 0 { throw SystemError("bind probe server to port", "\(port) in \(namespace.name)", errno: errno) }
        return socket
    }

    private var isRunning: Bool { lock.withLock { running } }

    private func serve() {
        let listeners = [tcp, udp, tcp6, udp6].map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        var connections: [pollfd] = []  // accepted TCP connections, echoed until the peer closes
        var buffer = [UInt8](repeating: 0, count: 2048)
        defer { connections.forEach { close($0.fd) } }
        while isRunning {
            var descriptors = listeners + connections
            guard poll(&descriptors, nfds_t(descriptors.count), 50) > 0 else { continue }
            for entry in descriptors where entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                if entry.fd == tcp.rawValue || entry.fd == tcp6.rawValue {
                    let connection = accept(entry.fd, nil, nil)
                    if connection >= 0 { connections.append(pollfd(fd: connection, events: Int16(POLLIN), revents: 0)) }
                } else if connections.contains(where: { $0.fd == entry.fd }) {
                    let received = recv(entry.fd, &buffer, buffer.count, 0)
                    if received > 0 {
                        _ = send(entry.fd, buffer, received, Int32(MSG_NOSIGNAL))
                    } else {
                        close(entry.fd)
                        connections.removeAll { $0.fd == entry.fd }
                    }
                } else {
                    var peer = sockaddr_storage()
                    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let received = withUnsafeMutablePointer(to: &peer) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(entry.fd, &buffer, buffer.count, 0, $0, &length) }
                    }
                    if received > 0 {
                        _ = withUnsafePointer(to: &peer) { pointer in
                            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(entry.fd, buffer, received, 0, $0, length) }
                        }
                    }
                }
            }
        }
    }

    /// Stops serving and closes the sockets.
    public func stop() {
        lock.withLock { running = false }
        while thread?.isFinished == false { usleep(10_000) }
    }

    deinit { stop() }
}

extension NetworkNamespace {
    /// Whether `probe` from this namespace to `address` completes within `timeout` seconds.
    public func probe(_ probe: Probe, to address: String, port: UInt16, timeout: Double = 0.3) throws -> Bool {
        let family: Int32 = address.contains(":") ? AF_INET6 : AF_INET
        // Raw IPv6 sockets refuse a port other than 0 (or their protocol).
        var target = try SocketAddress.parse(address, port: probe == .icmp ? 0 : port)
        switch probe {
        case .tcp:
            let socket = try self.socket(domain: family, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
            let started = target.withSockaddr { connect(socket.rawValue, $0, $1) }
            if started == 0 { return true }
            guard errno == EINPROGRESS else { return false }
            var entry = pollfd(fd: socket.rawValue, events: Int16(POLLOUT), revents: 0)
            guard poll(&entry, 1, Int32(timeout * 1000)) > 0 else { return false }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(socket.rawValue, SOL_SOCKET, SO_ERROR, &error, &length)
            return error == 0
        case .udp:
            let socket = try self.socket(domain: family, type: Int32(SOCK_DGRAM.rawValue))
            let payload: [UInt8] = Array("netfence probe".utf8)
            _ = target.withSockaddr { sendto(socket.rawValue, payload, payload.count, 0, $0, $1) }
            return Self.awaitReply(socket, timeout: timeout) { $0 == payload }
        case .icmp:
            let v6 = family == AF_INET6
            let socket = try self.socket(domain: family, type: Int32(SOCK_RAW.rawValue), protocol: Int32(v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
            let identifier = UInt16.random(in: 1...UInt16.max)
            var request: [UInt8] = [v6 ? 128 : 8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), 0, 1] + Array("netfence".utf8)
            if !v6 { Self.checksum(&request) }  // the kernel computes ICMPv6 checksums for raw sockets
            _ = target.withSockaddr { sendto(socket.rawValue, request, request.count, 0, $0, $1) }
            return Self.awaitReply(socket, timeout: timeout) { reply in
                // IPv4 raw sockets return the IP header too.
                let icmp = v6 ? reply[...] : reply.dropFirst(Int((reply.first ?? 0x45) & 0xf) * 4)
                guard icmp.count >= 6 else { return false }
                let start = icmp.startIndex
                return icmp[start] == (v6 ? 129 : 0) && UInt16(icmp[start + 4]) << 8 | UInt16(icmp[start + 5]) == identifier
            }
        }
    }

    /// Sends `count` UDP datagrams of `size` bytes from this namespace to `address`, back to back
    /// from one socket (one flow): a flood for what must hold under one (nothing waits for replies).
    public func sendDatagrams(_ count: Int, to address: String, port: UInt16, size: Int = 32) throws {
        try send([UInt8](repeating: 0x6e, count: size), times: count, to: address, port: port)
    }

    /// Sends one UDP datagram carrying `payload` from a socket of its own (a flow of its own).
    public func sendPayload(_ payload: [UInt8], to address: String, port: UInt16) throws {
        try send(payload, times: 1, to: address, port: port)
    }

    private func send(_ payload: [UInt8], times count: Int, to address: String, port: UInt16) throws {
        var target = try SocketAddress.parse(address, port: port)
        let socket = try self.socket(domain: address.contains(":") ? AF_INET6 : AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        for _ in 0..<count {
            let sent = target.withSockaddr { sendto(socket.rawValue, payload, payload.count, 0, $0, $1) }
            // An ICMP error for an earlier datagram may surface as this send's error; the datagram still went.
            if sent < 0, ![ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(errno) { throw SystemError("send UDP datagram to", address, errno: errno) }
        }
    }

    /// A TCP connection to `address` that stays open (nil when it cannot be made within `timeout`).
    public func openConnection(to address: String, port: UInt16, timeout: Double = 0.5) throws -> EchoConnection? {
        var target = try SocketAddress.parse(address, port: port)
        let socket = try self.socket(domain: address.contains(":") ? AF_INET6 : AF_INET, type: Int32(SOCK_STREAM.rawValue))
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1e6))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] { setsockopt(socket.rawValue, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size)) }
        guard target.withSockaddr({ connect(socket.rawValue, $0, $1) }) == 0 else { return nil }
        return EchoConnection(socket: socket)
    }

    private static func awaitReply(_ socket: FileDescriptor, timeout: Double, matches: ([UInt8]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return false }
            var entry = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(remaining * 1000) + 1) > 0 else { return false }
            let received = recv(socket.rawValue, &buffer, buffer.count, 0)
            if received > 0, matches(Array(buffer.prefix(received))) { return true }
        }
    }

    private static func checksum(_ bytes: inout [UInt8]) {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: bytes.count, by: 2) {
            sum += UInt32(bytes[index]) << 8 | UInt32(index + 1 < bytes.count ? bytes[index + 1] : 0)
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        let value = ~UInt16(sum)
        bytes[2] = UInt8(value >> 8)
        bytes[3] = UInt8(value & 0xff)
    }
}

/// An open TCP connection to a ``ProbeServer``, for checking that an established flow still passes.
public final class EchoConnection: @unchecked Sendable {
    private let socket: FileDescriptor

    init(socket: FileDescriptor) { self.socket = socket }

    /// Whether bytes sent now come back (within the connection's timeout).
    public func echoes() -> Bool {
        let payload = Array("netfence echo \(UInt32.random(in: 0...UInt32.max))".utf8)
        guard send(socket.rawValue, payload, payload.count, Int32(MSG_NOSIGNAL)) == payload.count else { return false }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while received.count < payload.count {
            let count = recv(socket.rawValue, &buffer, buffer.count, 0)
            guard count > 0 else { return false }
            received += buffer.prefix(count)
        }
        return received == payload
    }
}

/// A sockaddr_in or sockaddr_in6 in one storage.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t

    /// The wildcard address of `family` (all zeros) at `port`.
    static func any(family: Int32, port: UInt16) -> SocketAddress {
        var result = SocketAddress(length: 0)
        if family == AF_INET6 {
            var v6 = sockaddr_in6()
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            withUnsafeBytes(of: v6) { source in withUnsafeMutableBytes(of: &result.storage) { $0.copyMemory(from: source) } }
            result.length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var v4 = sockaddr_in()
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            withUnsafeBytes(of: v4) { source in withUnsafeMutableBytes(of: &result.storage) { $0.copyMemory(from: source) } }
            result.length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        return result
    }

    static func parse(_ address: String, port: UInt16) throws -> SocketAddress {
        let v6 = address.contains(":")
        var result = any(family: v6 ? AF_INET6 : AF_INET, port: port)
        let offset = v6 ? MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)! : MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
        let parsed = withUnsafeMutableBytes(of: &result.storage) { inet_pton(v6 ? AF_INET6 : AF_INET, address, $0.baseAddress! + offset) }
        guard parsed == 1 else { throw SystemError("parse address", address, errno: EINVAL) }
        return result
    }

    mutating func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let length = self.length
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
