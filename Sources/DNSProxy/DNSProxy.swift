import BPFKit
import Datapath
import DatapathModel
import DNS
import Glibc
import HostKit
import NIOCore
import NIOPosix

/// What the proxy counted since it started.
public struct ProxyCounters: Sendable {
    public var queries = 0
    public var refused = 0
    public var forwarded = 0
    /// Addresses written into grants.
    public var granted = 0
    /// Answers replaced by SERVFAIL: a grant could not be written, or the upstream failed.
    public var failed = 0
    /// Truncated UDP answers asked again over TCP.
    public var retriedOverTCP = 0
}

/// `netfence dns proxy`: pods with domain rules send DNS here. A name their live
/// policy allows is forwarded upstream; every address of the answer is granted to
/// the pod (`GrantKeeper`) before the answer goes back, with TTLs no longer than
/// the grant. Everything runs on one event loop: the pending queries, the grant
/// writes and the counters are confined to it, so nothing locks.
public final class DNSProxy: @unchecked Sendable {
    /// A query waiting for the upstream.
    struct PendingQuery: Sendable {
        let client: Client
        let query: DNSMessage
        let question: DNSMessage.Question
        let admission: GrantKeeper.Admission
        let deadline: NIODeadline
        /// The largest UDP answer the client takes (512, or its EDNS payload size).
        let sizeLimit: Int
        /// The truncated UDP answer that sent this query over TCP (relayed if the full one does not fit).
        var truncated: DNSMessage?
    }

    /// Where an answer goes back to.
    enum Client: Sendable {
        case udp(channel: Channel, address: SocketAddress)
        case tcp(channel: Channel)
    }

    public let configuration: ProxyConfiguration
    public let keeper: GrantKeeper
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let loop: EventLoop
    private let upstreamAddress: SocketAddress
    private let upstreamTimeout: TimeAmount
    // Confined to `loop`:
    private var pending: [UInt16: PendingQuery] = [:]
    private var nextID = UInt16.random(in: 0...UInt16.max)
    private var upstreamUDP: Channel?
    private var servers: [Channel] = []
    private var routes: RouteLookup
    private var counters = ProxyCounters()
    /// UDP channels written to since their last flush: flushed when a read burst ends, so a
    /// burst of datagrams leaves in one sendmmsg.
    private var unflushed: Set<ObjectIdentifier> = []

    public init(configuration: ProxyConfiguration, datapath: Datapath) throws {
        self.configuration = configuration
        keeper = GrantKeeper(datapath: datapath, ttlBounds: configuration.ttlBounds,
                             retentionNanoseconds: UInt64(configuration.retention.components.seconds) * 1_000_000_000)
        loop = group.next()
        upstreamAddress = try SocketAddress(ipAddress: configuration.upstream.host, port: configuration.upstream.port)
        let (seconds, attoseconds) = configuration.upstreamTimeout.components
        upstreamTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        routes = try RouteLookup()
    }

    /// Binds every listen address (UDP and TCP) and the upstream socket, registers the
    /// addresses with the datapath and starts the heartbeat.
    public func start() throws {
        let upstream = try DatagramBootstrap(group: loop)
            .channelOption(.maxMessagesPerRead, value: 16)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UpstreamDatagramHandler(proxy: self)) }
            }
            .bind(host: configuration.upstream.isIPv6 ? "::" : "0.0.0.0", port: 0).wait()
        var bound = [upstream]
        do {
            for endpoint in configuration.listen {
                bound.append(try DatagramBootstrap(group: loop)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelOption(.receivePacketInfo, value: true)
                    .channelOption(.maxMessagesPerRead, value: 16)
                    .channelInitializer { [self] channel in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ClientDatagramHandler(proxy: self)) }
                    }
                    .bind(host: endpoint.host, port: endpoint.port).wait())
                bound.append(try ServerBootstrap(group: loop)
                    .serverChannelOption(.backlog, value: 256)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { [self] channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandlers([
                                ByteToMessageHandler(DNSStreamFrameDecoder()), ClientStreamHandler(proxy: self),
                            ])
                        }
                    }
                    .bind(host: endpoint.host, port: endpoint.port).wait())
            }
        } catch {
            for channel in bound { try? channel.close().wait() }
            throw error
        }
        let started = BootClock.nanoseconds(CLOCK_REALTIME)
        for endpoint in configuration.listen {
            guard let address = IPAddress(endpoint.host) else { continue }
            try keeper.datapath.registerDNSProxy(address: address, DNSProxyRecord(pid: UInt32(getpid()), port: UInt16(endpoint.port),
                                                                                 startedNanoseconds: started))
        }
        let listening = Array(bound.dropFirst())
        try loop.submit { [self] in
            upstreamUDP = upstream
            servers = listening
        }.wait()
        try beat()
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [self] _ in
            try? beat()
            expirePending()
        }
        loop.scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { [self] _ in
            _ = try? keeper.collectExpired()
        }
    }

    /// Stops serving: the heartbeat goes to 0 (grants allow no new flow from now on),
    /// the listen addresses stay registered (pods keep sending DNS nowhere else), and
    /// the sockets close. Returns what was counted.
    public func stop() -> ProxyCounters {
        let result = try? loop.submit { [self] in
            let channels = servers + [upstreamUDP].compactMap { $0 }
            servers = []
            upstreamUDP = nil
            return (channels, counters)
        }.wait()
        for channel in result?.0 ?? [] { try? channel.close().wait() }
        try? keeper.datapath.beatDNSHeartbeat(monotonicNanoseconds: 0)
        for endpoint in configuration.listen {
            guard let address = IPAddress(endpoint.host) else { continue }
            try? keeper.datapath.registerDNSProxy(address: address, DNSProxyRecord(pid: 0, port: UInt16(endpoint.port), startedNanoseconds: 0))
        }
        try? group.syncShutdownGracefully()
        return result?.1 ?? ProxyCounters()
    }

    private func beat() throws {
        try keeper.datapath.beatDNSHeartbeat(monotonicNanoseconds: BootClock.nanoseconds(CLOCK_MONOTONIC))
    }

    // MARK: queries (on the loop)

    /// A query from a pod (or any client): refused, or forwarded upstream.
    func received(query bytes: [UInt8], from client: Client, ifindex: UInt32?) {
        guard let query = try? DNSMessage(parsing: bytes), !query.isResponse else { return }  // not a DNS query: nothing to answer
        counters.queries += 1
        guard query.questions.count == 1, let question = query.questions.first else {
            return respond(to: client, query.reply(responseCode: DNSMessage.ResponseCode.formatError))
        }
        let admission: GrantKeeper.Admission
        do {
            admission = try keeper.admit(ifindex: ifindex, name: question.name)
        } catch {
            counters.failed += 1
            return respond(to: client, query.reply(responseCode: DNSMessage.ResponseCode.serverFailure))
        }
        if case .refused = admission {
            counters.refused += 1
            return respond(to: client, query.reply(responseCode: configuration.refusalCode))
        }
        counters.forwarded += 1
        let sizeLimit = query.additionals.first { $0.type == DNSMessage.RecordType.opt }.map { max(512, Int($0.recordClass)) } ?? 512
        let waiting = PendingQuery(client: client, query: query, question: question, admission: admission,
                                   deadline: .now() + upstreamTimeout, sizeLimit: sizeLimit)
        switch client {
        case .udp: forwardOverUDP(waiting)
        case .tcp: forwardOverTCP(waiting)
        }
    }

    private func forwardOverUDP(_ waiting: PendingQuery) {
        guard let upstream = upstreamUDP, pending.count < Int(UInt16.max) / 2 else {
            return fail(waiting)
        }
        var id = nextID
        while pending[id] != nil { id &+= 1 }
        nextID = id &+ 1
        pending[id] = waiting
        var bytes = waiting.query.bytes
        bytes[0] = UInt8(id >> 8)
        bytes[1] = UInt8(id & 0xff)
        upstream.write(AddressedEnvelope(remoteAddress: upstreamAddress, data: upstream.allocator.buffer(bytes: bytes)), promise: nil)
        unflushed.insert(ObjectIdentifier(upstream))
    }

    /// One TCP connection upstream per query: DNS over TCP is the exception (TCP
    /// clients, truncated answers), so no connection is kept.
    private func forwardOverTCP(_ waiting: PendingQuery) {
        let connecting = ClientBootstrap(group: loop)
            .connectTimeout(max(.zero, waiting.deadline - .now()))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(DNSStreamFrameDecoder()), UpstreamStreamHandler(proxy: self, waiting: waiting),
                    ])
                }
            }
            .connect(to: upstreamAddress)
        connecting.whenComplete { [self] result in
            switch result {
            case .failure:
                fail(waiting)
                flushDatagrams()
            case .success(let channel):
                channel.writeAndFlush(channel.allocator.buffer(bytes: Self.framed(waiting.query.bytes)), promise: nil)
                channel.eventLoop.scheduleTask(deadline: waiting.deadline) { channel.close(promise: nil) }
            }
        }
    }

    /// An upstream datagram: the answer to a pending query, or noise.
    func receivedUpstream(datagram bytes: [UInt8]) {
        guard bytes.count >= 12 else { return }
        let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        guard let waiting = pending[id], let answer = try? DNSMessage(parsing: bytes), answer.isResponse,
              answer.questions.first == waiting.question else { return }
        pending[id] = nil
        if answer.isTruncated {
            counters.retriedOverTCP += 1
            var again = waiting
            again.truncated = answer
            return forwardOverTCP(again)
        }
        deliver(answer, for: waiting)
    }

    /// An upstream TCP answer to `waiting` (nil: the connection ended without one).
    func receivedUpstream(stream bytes: [UInt8]?, for waiting: PendingQuery) {
        defer { flushDatagrams() }  // a UDP client's answer, outside any UDP read burst
        guard let bytes, let answer = try? DNSMessage(parsing: bytes), answer.isResponse, answer.questions.first == waiting.question else {
            return fail(waiting)
        }
        deliver(answer, for: waiting)
    }

    /// Grants what the answer resolved, then releases it with its TTLs capped and the pod's id.
    private func deliver(_ answer: DNSMessage, for waiting: PendingQuery) {
        var cap: UInt32?
        if case .allowed(let podID, let patterns) = waiting.admission {
            let resolved = answer.resolved(for: waiting.question.name)
            if !resolved.isEmpty {
                do {
                    cap = try keeper.grant(podID: podID, patterns: patterns, resolved: resolved)
                    counters.granted += resolved.count
                } catch {
                    return fail(waiting)  // never an answer the datapath would not honour
                }
            }
        }
        var message = answer
        if case .udp = waiting.client, answer.bytes.count > waiting.sizeLimit, let truncated = waiting.truncated {
            message = truncated  // the client asks again over TCP
        }
        var bytes = cap.map { message.cappingTTLs(at: $0) } ?? message.bytes
        bytes[0] = UInt8(waiting.query.id >> 8)
        bytes[1] = UInt8(waiting.query.id & 0xff)
        respond(to: waiting.client, bytes)
    }

    private func fail(_ waiting: PendingQuery) {
        counters.failed += 1
        respond(to: waiting.client, waiting.query.reply(responseCode: DNSMessage.ResponseCode.serverFailure))
    }

    private func expirePending() {
        let now = NIODeadline.now()
        for (id, waiting) in pending where waiting.deadline < now {
            pending[id] = nil
            fail(waiting)
        }
        flushDatagrams()
    }

    private func respond(to client: Client, _ bytes: [UInt8]) {
        switch client {
        case .udp(let channel, let address):
            channel.write(AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
            unflushed.insert(ObjectIdentifier(channel))
        case .tcp(let channel):
            channel.writeAndFlush(channel.allocator.buffer(bytes: Self.framed(bytes)), promise: nil)
        }
    }

    /// A read burst ended: what it wrote over UDP leaves now.
    func flushDatagrams() {
        guard !unflushed.isEmpty else { return }
        for channel in servers + [upstreamUDP].compactMap({ $0 }) where unflushed.contains(ObjectIdentifier(channel)) { channel.flush() }
        unflushed.removeAll(keepingCapacity: true)
    }

    /// The host interface a TCP client's packets come through (its pod's host veth).
    func interface(of address: SocketAddress?) -> UInt32? {
        guard let bytes = address.flatMap(Self.addressBytes) else { return nil }
        return try? routes.outputInterface(to: bytes)
    }

    static func addressBytes(_ address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let v4): withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6): withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        default: nil
        }
    }

    /// DNS over TCP: each message after its two-byte length.
    static func framed(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes }
}

// MARK: channel handlers

/// Splits a DNS-over-TCP stream into messages.
struct DNSStreamFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self), buffer.readableBytes >= 2 + Int(length) else {
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

/// Queries over UDP; the interface they came in through names the pod.
final class ClientDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let proxy: DNSProxy

    init(proxy: DNSProxy) { self.proxy = proxy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let ifindex = envelope.metadata?.packetInfo.map { UInt32(truncatingIfNeeded: $0.interfaceIndex) }
        proxy.received(query: Array(envelope.data.readableBytesView), from: .udp(channel: context.channel, address: envelope.remoteAddress),
                       ifindex: ifindex)
    }

    func channelReadComplete(context: ChannelHandlerContext) { proxy.flushDatagrams() }
}

/// Queries over TCP; the route back to the client names the pod.
final class ClientStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let proxy: DNSProxy
    private var ifindex: UInt32?

    init(proxy: DNSProxy) { self.proxy = proxy }

    func channelActive(context: ChannelHandlerContext) {
        ifindex = proxy.interface(of: context.channel.remoteAddress)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        proxy.received(query: Array(Self.unwrapInboundIn(data).readableBytesView), from: .tcp(channel: context.channel), ifindex: ifindex)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

final class UpstreamDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let proxy: DNSProxy

    init(proxy: DNSProxy) { self.proxy = proxy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        proxy.receivedUpstream(datagram: Array(Self.unwrapInboundIn(data).data.readableBytesView))
    }

    func channelReadComplete(context: ChannelHandlerContext) { proxy.flushDatagrams() }

    func errorCaught(context: ChannelHandlerContext, error: Error) {}  // ICMP errors of a dead upstream: the query times out
}

/// One query's TCP connection upstream: the first message answers it.
final class UpstreamStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let proxy: DNSProxy
    private let waiting: DNSProxy.PendingQuery
    private var answered = false

    init(proxy: DNSProxy, waiting: DNSProxy.PendingQuery) {
        self.proxy = proxy
        self.waiting = waiting
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        proxy.receivedUpstream(stream: Array(Self.unwrapInboundIn(data).readableBytesView), for: waiting)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !answered {
            answered = true
            proxy.receivedUpstream(stream: nil, for: waiting)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
