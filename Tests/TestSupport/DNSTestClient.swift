import BPFKit
import DNS
import Foundation
import Glibc
import HostKit

/// A stub resolver inside a network namespace, as a pod's libc would be: one
/// query over UDP (or TCP), asked again over TCP when the UDP answer is truncated.
public struct DNSTestClient: Sendable {
    public struct Answer: Sendable {
        public let responseCode: UInt8
        /// The addresses answered for the name (CNAMEs followed), as text.
        public let addresses: [String]
        /// The smallest TTL of the answer's records.
        public let ttl: UInt32?
        /// Whether a truncated UDP answer sent the query over TCP.
        public let retriedOverTCP: Bool
    }

    public let namespace: NetworkNamespace
    public let server: String

    public init(in namespace: NetworkNamespace, server: String) {
        self.namespace = namespace
        self.server = server
    }

    /// Asks for `name` (type A, or AAAA); nil when no answer came within `timeout` seconds.
    public func query(_ name: String, type: UInt16 = DNSMessage.RecordType.a, overTCP: Bool = false, ednsPayloadSize: UInt16? = nil,
                      timeout: Double = 1) throws -> Answer? {
        let id = UInt16.random(in: 1...UInt16.max)
        let query = DNSMessage.query(id: id, name: name, type: type, ednsPayloadSize: ednsPayloadSize)
        var retried = false
        var bytes = overTCP ? try exchangeOverTCP(query, timeout: timeout) : try exchangeOverUDP(query, id: id, timeout: timeout)
        if !overTCP, let udp = bytes, let message = try? DNSMessage(parsing: udp), message.isTruncated {
            retried = true
            bytes = try exchangeOverTCP(query, timeout: timeout)
        }
        guard let bytes, let message = try? DNSMessage(parsing: bytes), message.id == id else { return nil }
        let resolved = DomainName(name).map { message.resolved(for: $0) } ?? []
        return Answer(responseCode: message.responseCode, addresses: resolved.map { Self.text($0.address) },
                      ttl: message.answers.map(\.ttl).min(), retriedOverTCP: retried)
    }

    private func exchangeOverUDP(_ query: [UInt8], id: UInt16, timeout: Double) throws -> [UInt8]? {
        let socket = try namespace.socket(domain: server.contains(":") ? AF_INET6 : AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        var target = try Self.socketAddress(server, port: 53)
        _ = withUnsafePointer(to: &target.storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket.rawValue, query, query.count, 0, $0, target.length) }
        }
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while deadline.timeIntervalSinceNow > 0 {
            var entry = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(deadline.timeIntervalSinceNow * 1000) + 1) > 0 else { return nil }
            let received = recv(socket.rawValue, &buffer, buffer.count, 0)
            if received < 0 { return nil }  // ICMP unreachable: nothing listens
            if received >= 2, UInt16(buffer[0]) << 8 | UInt16(buffer[1]) == id { return Array(buffer.prefix(received)) }
        }
        return nil
    }

    private func exchangeOverTCP(_ query: [UInt8], timeout: Double) throws -> [UInt8]? {
        let socket = try namespace.socket(domain: server.contains(":") ? AF_INET6 : AF_INET, type: Int32(SOCK_STREAM.rawValue))
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1e6))
        setsockopt(socket.rawValue, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket.rawValue, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var target = try Self.socketAddress(server, port: 53)
        let connected = withUnsafePointer(to: &target.storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket.rawValue, $0, target.length) }
        }
        guard connected == 0 else { return nil }
        let framed = [UInt8(query.count >> 8), UInt8(query.count & 0xff)] + query
        guard send(socket.rawValue, framed, framed.count, 0) == framed.count else { return nil }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while received.count < 2 || received.count < 2 + (Int(received[0]) << 8 | Int(received[1])) {
            let count = recv(socket.rawValue, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            received += buffer.prefix(count)
        }
        return Array(received[2...])
    }

    /// `address:port` as a socket address for sendto, bind and connect.
    public static func socketAddress(_ address: String, port: UInt16) throws -> (storage: sockaddr_storage, length: socklen_t) {
        var storage = sockaddr_storage()
        if address.contains(":") {
            var v6 = sockaddr_in6()
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, address, &v6.sin6_addr) == 1 else { throw SystemError("parse address", address, errno: EINVAL) }
            withUnsafeBytes(of: v6) { source in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) } }
            return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &v4.sin_addr) == 1 else { throw SystemError("parse address", address, errno: EINVAL) }
        withUnsafeBytes(of: v4) { source in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) } }
        return (storage, socklen_t(MemoryLayout<sockaddr_in>.size))
    }

    static func text(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        bytes.withUnsafeBytes { raw in _ = inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(cString: buffer)
    }
}
