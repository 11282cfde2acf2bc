import BPFKit
import Foundation
import Glibc
import HostKit

/// A UDP DNS server in a network namespace that answers as the test says: every
/// query is recorded (source port, ID, question bytes) and answered with what
/// `respond` returns for it, possibly nothing, possibly several datagrams.
public final class ScriptedDNSServer: @unchecked Sendable {
    /// One query as it arrived.
    public struct Query: Sendable {
        public let sourcePort: UInt16
        public let id: UInt16
        /// The question's name as sent, case kept (`aLLoWeD.test`).
        public let name: String
        public let bytes: [UInt8]
    }

    public let address: String
    public let port: UInt16
    private let socket: FileDescriptor
    private let lock = NSLock()
    private var received: [Query] = []
    private var stopped = false
    private var thread: Thread?

    /// Binds `address:port` in `namespace` and serves until `stop`.
    public init(in namespace: NetworkNamespace, address: String, port: UInt16,
                respond: @escaping @Sendable (Query) -> [[UInt8]]) throws {
        self.address = address
        self.port = port
        socket = try namespace.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        var bound = try DNSTestClient.socketAddress(address, port: port)
        let result = withUnsafePointer(to: &bound.storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.rawValue, $0, bound.length) } }
        guard result == 0 else { throw SystemError("bind", "\(address):\(port)", errno: errno) }
        let thread = Thread { [self] in serve(respond) }
        self.thread = thread
        thread.start()
    }

    private func serve(_ respond: @Sendable (Query) -> [[UInt8]]) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !lock.withLock({ stopped }) {
            var entry = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 50) > 0 else { continue }
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(socket.rawValue, &buffer, buffer.count, 0, $0, &length) }
            }
            guard count >= 12 else { continue }
            let bytes = Array(buffer.prefix(count))
            let sourcePort = withUnsafeBytes(of: peer) { UInt16(bigEndian: $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
            let query = Query(sourcePort: sourcePort, id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]), name: Self.name(in: bytes), bytes: bytes)
            lock.withLock { received.append(query) }
            for answer in respond(query) {
                _ = withUnsafePointer(to: &peer) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket.rawValue, answer, answer.count, 0, $0, length) }
                }
            }
        }
    }

    /// Every query so far.
    public var queries: [Query] { lock.withLock { received } }

    public func stop() {
        lock.withLock { stopped = true }
        while thread?.isFinished == false { usleep(10_000) }
    }

    deinit { stop() }

    /// The dotted name of a message's question, case as sent.
    public static func name(in bytes: [UInt8]) -> String {
        var labels: [String] = [], offset = 12
        while offset < bytes.count, bytes[offset] != 0, offset + 1 + Int(bytes[offset]) <= bytes.count {
            labels.append(String(decoding: bytes[offset + 1..<offset + 1 + Int(bytes[offset])], as: UTF8.self))
            offset += 1 + Int(bytes[offset])
        }
        return labels.joined(separator: ".")
    }

    /// An answer to `query`: its header and question, one A record (TTL 60) for `address`;
    /// `id` and `name` replace the query's own (a forger's guess, a wrong case).
    public static func answer(_ query: [UInt8], address: [UInt8], id: UInt16? = nil, lowercasingName: Bool = false) -> [UInt8] {
        answer(query, addresses: [address], id: id, lowercasingName: lowercasingName)
    }

    /// The same with an A record for each of `addresses`.
    public static func answer(_ query: [UInt8], addresses: [[UInt8]], id: UInt16? = nil, lowercasingName: Bool = false) -> [UInt8] {
        var offset = 12
        while offset < query.count, query[offset] != 0 { offset += 1 + Int(query[offset]) }
        var bytes = Array(query.prefix(offset + 5))
        if let id { bytes[0] = UInt8(id >> 8); bytes[1] = UInt8(id & 0xff) }
        bytes[2] = 0x81; bytes[3] = 0x80  // response, recursion desired and available, NOERROR
        bytes[6] = UInt8(addresses.count >> 8); bytes[7] = UInt8(addresses.count & 0xff); bytes[8] = 0; bytes[9] = 0; bytes[10] = 0; bytes[11] = 0
        if lowercasingName {
            for index in 12..<offset where (0x41...0x5a).contains(bytes[index]) { bytes[index] |= 0x20 }
        }
        return bytes + addresses.flatMap { [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4] + $0 }
    }
}
