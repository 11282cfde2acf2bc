import HostKit
import Loader
import NIOCore
import NIOHTTP1
import NIOPosix

/// `netfence metrics --listen`: GET /metrics over HTTP/1.1 (SwiftNIO), any number of
/// scrapers at once; a connection that sends nothing for `idleTimeout` is closed, so an
/// idle one never holds a scrape up.
public final class MetricsServer: @unchecked Sendable {
    /// The address served unless another is given: only this node's own processes can scrape it.
    public static let defaultAddress = "127.0.0.1:9464"
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel

    /// `127.0.0.1:9464` or `[::1]:9464`.
    public static func parse(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port != 0 else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard (try? SocketAddress(ipAddress: host, port: Int(port))) != nil else { return nil }
        return (host, Int(port))
    }

    /// Whether `host` is a wildcard: every address of the node, reachable from pods.
    public static func isWildcard(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" }

    /// The loader the requests read, on the server's one event loop thread (reads only: map lookups).
    private final class Source: @unchecked Sendable {
        let loader: Loader
        init(_ loader: Loader) { self.loader = loader }
    }

    /// Binds `host:port` and serves the loader's counters at GET /metrics until `stop`.
    public convenience init(host: String, port: Int, loader: Loader, idleTimeout: TimeAmount = .seconds(5)) throws {
        let source = Source(loader)
        try self.init(host: host, port: port, idleTimeout: idleTimeout) { try Metrics.render(source.loader) }
    }

    /// Binds `host:port` and serves `render()`'s text at GET /metrics until `stop`; a socket the
    /// system refuses is a `SystemError` with its errno.
    public init(host: String, port: Int, idleTimeout: TimeAmount = .seconds(5), render: @escaping @Sendable () throws -> String) throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(render: render))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            guard let error = error as? IOError else { throw error }
            throw SystemError("listen on", host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", errno: error.errnoCode)
        }
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// One connection's requests: GET /metrics (200), another path (404), another method (405).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () throws -> String
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () throws -> String) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let (status, body): (HTTPResponseStatus, String)
        var headers = HTTPHeaders()
        if path != "/metrics" {
            (status, body) = (.notFound, "netfence serves /metrics only\n")
        } else if head.method != .GET {
            (status, body) = (.methodNotAllowed, "GET /metrics\n")
            headers.add(name: "Allow", value: "GET")
        } else {
            do {
                (status, body) = (.ok, try render())
            } catch {
                (status, body) = (.internalServerError, "could not read the counters: \(error)\n")
            }
        }
        headers.add(name: "Content-Type", value: status == .ok ? MetricsServer.contentType : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
