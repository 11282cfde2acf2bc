import BPFKit
import CommandTree
import Events
import Foundation
import Glibc

/// `netfence metrics`: the datapath's counters for Prometheus.
struct MetricsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "metrics",
        abstract: "Print the datapath's counters in Prometheus text format, or serve them with --listen.",
        discussion: """
            Packets and bytes by pod, direction and verdict; lost events; parse drops; conntrack entries and \
            capacity; pods. -o json prints the same families as a JSON array (name, type, help, samples with labels). With --listen ADDRESS:PORT, serves GET /metrics there until SIGINT or SIGTERM (give a \
            loopback address unless the scraper is elsewhere).
            """)

    static let listen = Option<String?>(long: "listen", valueName: "address:port", help: "Serve /metrics here, e.g. 127.0.0.1:9464.",
                                        default: nil, showDefault: false)
    static let arguments = [listen.definition]

    let listen: String?
    init(parsed: ParsedArguments) { listen = parsed[Self.listen] }

    func validate() throws {
        if let listen, MetricsServer.parse(listen) == nil {
            throw UsageError("'\(listen)' is not ADDRESS:PORT (for example 127.0.0.1:9464 or [::1]:9464)")
        }
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        guard let listen, let (address, port) = MetricsServer.parse(listen) else {
            switch context.outputFormat {
            case .json: context.print(try JSONOutput.encode(try Metrics.collect(loader)))
            case .table: context.write(try Metrics.render(loader))
            }
            return
        }
        let server = try MetricsServer(address: address, port: port)
        context.print("Serving http://\(listen)/metrics until SIGINT or SIGTERM")
        StopSignals.install()
        while stopRequested == 0 {
            try server.serveOne(timeout: 0.2) { try Metrics.render(loader) }
        }
    }
}

/// A minimal HTTP/1.1 responder for one path, enough for a Prometheus scraper.
final class MetricsServer {
    private let socket: Int32

    /// `127.0.0.1:9464` or `[::1]:9464`.
    static func parse(_ text: String) -> (String, UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port != 0 else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else { return nil }
        return (host, port)
    }

    init(address: String, port: UInt16) throws {
        let v6 = address.contains(":")
        socket = Glibc.socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw RuntimeError("open a socket for metrics: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var result: Int32
        if v6 {
            var sockaddr = sockaddr_in6()
            sockaddr.sin6_family = sa_family_t(AF_INET6)
            sockaddr.sin6_port = port.bigEndian
            inet_pton(AF_INET6, address, &sockaddr.sin6_addr)
            result = withUnsafePointer(to: &sockaddr) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sockaddr = sockaddr_in()
            sockaddr.sin_family = sa_family_t(AF_INET)
            sockaddr.sin_port = port.bigEndian
            inet_pton(AF_INET, address, &sockaddr.sin_addr)
            result = withUnsafePointer(to: &sockaddr) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard result == 0, Glibc.listen(socket, 16) == 0 else {
            let error = String(cString: strerror(errno))
            close(socket)
            throw RuntimeError("listen on \(address):\(port): \(error)", hint: "choose a free port with --listen")
        }
    }

    deinit { close(socket) }

    /// Answers one request if one arrives within `timeout` seconds.
    func serveOne(timeout: Double, body: () throws -> String) throws {
        var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(timeout * 1000)) > 0 else { return }
        let connection = accept(socket, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        var request = [UInt8](repeating: 0, count: 4096)
        let received = recv(connection, &request, request.count, 0)
        let line = String(decoding: request.prefix(max(0, received)), as: UTF8.self).split(separator: "\r\n").first ?? ""
        let (status, type, text): (String, String, String) = line.hasPrefix("GET /metrics")
            ? ("200 OK", "text/plain; version=0.0.4; charset=utf-8", try body())
            : ("404 Not Found", "text/plain", "netfence serves /metrics only\n")
        let response = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(text.utf8.count)\r\nConnection: close\r\n\r\n\(text)"
        _ = response.withCString { send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }
}
