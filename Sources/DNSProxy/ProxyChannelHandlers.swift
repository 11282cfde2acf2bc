import NIOCore

// The channel handlers of a proxy shard: each hands what it reads to its shard, on the shard's loop.

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
    private let shard: ProxyShard

    init(shard: ProxyShard) { self.shard = shard }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        let ifindex = envelope.metadata?.packetInfo.map { UInt32(truncatingIfNeeded: $0.interfaceIndex) }
        shard.received(query: Array(envelope.data.readableBytesView), from: .udp(channel: context.channel, address: envelope.remoteAddress),
                       ifindex: ifindex)
    }

    func channelReadComplete(context: ChannelHandlerContext) { shard.readBurstEnded() }
}

/// Queries over TCP; the route back to the client names the pod. Closed when idle.
final class ClientStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let shard: ProxyShard
    private let clientKey: ProxyShard.ClientKey
    private var ifindex: UInt32?
    private var idled = false

    init(shard: ProxyShard, clientKey: ProxyShard.ClientKey) {
        self.shard = shard
        self.clientKey = clientKey
    }

    func channelActive(context: ChannelHandlerContext) {
        ifindex = shard.interface(of: context.channel.remoteAddress)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        shard.received(query: Array(Self.unwrapInboundIn(data).readableBytesView), from: .tcp(channel: context.channel), ifindex: ifindex,
                       clientKey: clientKey)
    }

    func channelReadComplete(context: ChannelHandlerContext) { shard.readBurstEnded() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else { return context.fireUserInboundEventTriggered(event) }
        idled = true
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        shard.connectionClosed(clientKey: clientKey, idle: idled)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

/// Answers on one connected upstream socket (the kernel delivers the upstream's only; checked again).
final class UpstreamDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let shard: ProxyShard

    init(shard: ProxyShard) { self.shard = shard }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = Self.unwrapInboundIn(data)
        shard.receivedUpstream(datagram: Array(envelope.data.readableBytesView), from: envelope.remoteAddress, on: context.channel)
    }

    func channelReadComplete(context: ChannelHandlerContext) { shard.readBurstEnded() }

    func errorCaught(context: ChannelHandlerContext, error: Error) {}  // ICMP errors of a dead upstream: the query times out
}

/// One query's TCP connection upstream: the first message answers it.
final class UpstreamStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let shard: ProxyShard
    private let waiting: ProxyShard.PendingQuery
    private var answered = false

    init(shard: ProxyShard, waiting: ProxyShard.PendingQuery) {
        self.shard = shard
        self.waiting = waiting
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        shard.receivedUpstream(stream: Array(Self.unwrapInboundIn(data).readableBytesView), for: waiting)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !answered {
            answered = true
            shard.receivedUpstream(stream: nil, for: waiting)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
