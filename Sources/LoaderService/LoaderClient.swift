import Foundation
import Glibc

/// A blocking client of `netfence loader serve`: one keep-alive connection to its Unix
/// socket, one request at a time (what an agent holds; tests and `bench cli` use it).
public final class LoaderClient {
    private let socket: Int32

    /// Connects to the server on `socketPath`. A throw after `socket` is set still runs `deinit`,
    /// which closes it: the failure paths must not close it too (a second close would close
    /// whatever the caller's other threads opened under the same number meanwhile).
    public init(socketPath: String) throws {
        socket = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw ServeError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ServeError("\(socketPath) is longer than a Unix socket path may be")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            throw ServeError("connect to \(socketPath): \(String(cString: strerror(error)))")
        }
    }

    deinit { if socket >= 0 { close(socket) } }

    /// Runs `request` on the server; the HTTP status and the body (a `LoaderResponse` when 200).
    public func send(_ request: LoaderRequest) throws -> (status: Int, body: [UInt8]) {
        try send(raw: Array(try JSONEncoder().encode(request)))
    }

    /// Runs `request`; what the command did.
    public func run(_ request: LoaderRequest) throws -> LoaderResponse {
        let (status, body) = try send(request)
        guard status == 200 else { throw ServeError("HTTP \(status): \(String(decoding: body, as: UTF8.self))") }
        return try JSONDecoder().decode(LoaderResponse.self, from: Data(body))
    }

    /// Posts `body` as it is to `path` with `method`.
    public func send(raw body: [UInt8], method: String = "POST", path: String = LoaderServer.path) throws -> (status: Int, body: [UInt8]) {
        let head = "\(method) \(path) HTTP/1.1\r\nHost: netfence\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        try writeAll(Array(head.utf8) + body)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        func readMore() throws {
            let count = chunk.withUnsafeMutableBytes { read(socket, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { return }
            guard count > 0 else { throw ServeError("the server closed the connection") }
            received += chunk[0..<count]
        }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            try readMore()
            headEnd = received.indices.dropLast(3).first { received[$0..<($0 + 4)].elementsEqual(separator) }
        }
        let headText = String(decoding: received[..<headEnd!], as: UTF8.self)
        let lines = headText.split(separator: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw ServeError("not an HTTP response: \(headText.prefix(80))")
        }
        let length = lines.dropFirst().compactMap { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "content-length" ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
        }.first ?? 0
        let bodyStart = headEnd! + 4
        while received.count < bodyStart + length { try readMore() }
        return (status, Array(received[bodyStart..<(bodyStart + length)]))
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(socket, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw ServeError("write to the server: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }
}
