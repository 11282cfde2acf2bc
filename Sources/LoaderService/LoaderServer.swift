import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// What one request asks: a command line (its words after `netfence`) and, for
/// `-f -`, what it reads as standard input.
public struct LoaderRequest: Codable, Sendable {
    public var args: [String]
    public var input: String?

    public init(args: [String], input: String? = nil) {
        self.args = args
        self.input = input
    }
}

/// What the command did: its exit code and everything it wrote, as its process would have.
public struct LoaderResponse: Codable, Sendable, Equatable {
    public var exitCode: Int32
    public var stdout: String
    public var stderr: String

    public init(exitCode: Int32, stdout: String, stderr: String) {
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// `netfence loader serve`: commands over HTTP/1.1 on a Unix socket (SwiftNIO), for
/// agents that call often and should not pay a process per call. POST /v1/run takes a
/// `LoaderRequest` as JSON and answers a `LoaderResponse`; `run` executes one request
/// at a time, in arrival order, on a thread of its own (the event loop only moves bytes).
/// The socket is the door: it is created 0600, so only its owner (root) may connect.
public final class LoaderServer: @unchecked Sendable {
    public static let path = "/v1/run"
    /// A request body larger than this is refused (413): the loader reads no larger input.
    public static let maximumBodyBytes = 64 << 20

    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let worker = NIOThreadPool(numberOfThreads: 1)
    private let channel: Channel
    public let socketPath: String

    /// A socket another server listens on is refused; a stale one (nobody listens) is replaced;
    /// anything else at `socketPath` is refused.
    public init(socketPath: String, run: @escaping @Sendable (LoaderRequest) -> LoaderResponse) throws {
        self.socketPath = socketPath
        try Self.clearStaleSocket(socketPath)
        worker.start()
        let worker = self.worker
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(LoaderHTTPHandler(worker: worker, run: run))
                }
            }
        let previousMask = umask(0o077)  // the socket is born for its owner only
        defer { umask(previousMask) }
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: socketPath).wait()
            chmod(socketPath, 0o600)
        } catch {
            try? worker.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            throw ServeError("could not listen on \(socketPath): \(reason)")
        }
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? worker.syncShutdownGracefully()
        unlink(socketPath)
    }

    static func clearStaleSocket(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else { throw ServeError("\(path) exists and is not a socket: refusing to replace it") }
        if (try? LoaderClient(socketPath: path)) != nil { throw ServeError("another server listens on \(path)") }
        unlink(path)
    }
}

public struct ServeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One connection's requests, each answered once its command ran.
final class LoaderHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let worker: NIOThreadPool
    private let run: @Sendable (LoaderRequest) -> LoaderResponse
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false

    init(worker: NIOThreadPool, run: @escaping @Sendable (LoaderRequest) -> LoaderResponse) {
        self.worker = worker
        self.run = run
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = context.channel.allocator.buffer(capacity: 0)
            tooLarge = false
        case .body(var chunk):
            if (body?.readableBytes ?? 0) + chunk.readableBytes > LoaderServer.maximumBodyBytes {
                tooLarge = true
                body?.clear()
            } else {
                body?.writeBuffer(&chunk)
            }
        case .end:
            guard let requestHead = head else { return }
            head = nil
            respond(to: requestHead, body: body.map { Array($0.readableBytesView) } ?? [], context: context)
        }
    }

    private func respond(to requestHead: HTTPRequestHead, body: [UInt8], context: ChannelHandlerContext) {
        let path = requestHead.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if path != LoaderServer.path { return reply(.notFound, error: "netfence serves POST \(LoaderServer.path) only", requestHead, context) }
        if requestHead.method != .POST { return reply(.methodNotAllowed, error: "POST \(LoaderServer.path)", requestHead, context) }
        if tooLarge { return reply(.payloadTooLarge, error: "the request is larger than \(LoaderServer.maximumBodyBytes) bytes", requestHead, context) }
        guard let request = try? JSONDecoder().decode(LoaderRequest.self, from: Data(body)) else {
            return reply(.badRequest, error: "the body is not a request: {\"args\": [\"loader\", \"status\", \"-o\", \"json\"], \"input\": null}",
                         requestHead, context)
        }
        let run = self.run
        let loop = context.eventLoop
        // The answer is written on the event loop, by this handler: both are bound to it.
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        worker.runIfActive(eventLoop: loop) { run(request) }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let response):
                let bytes = (try? JSONEncoder().encode(response)).map { Array($0) } ?? []
                handler.write(.ok, bytes, requestHead, context)
            case .failure:
                handler.reply(.serviceUnavailable, error: "the server is stopping", requestHead, context)
            }
        }
    }

    private func reply(_ status: HTTPResponseStatus, error: String, _ requestHead: HTTPRequestHead, _ context: ChannelHandlerContext) {
        let bytes = (try? JSONEncoder().encode(["error": error])).map { Array($0) } ?? []
        write(status, bytes, requestHead, context)
    }

    private func write(_ status: HTTPResponseStatus, _ bytes: [UInt8], _ requestHead: HTTPRequestHead, _ context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(bytes.count))
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "POST") }
        let keepAlive = requestHead.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: requestHead.version, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
