import BPFKit
import Datapath
import DatapathModel
import DNS
import Glibc
import HostKit
import NIOCore
import NIOPosix

/// One event loop of `netfence dns proxy`: its own UDP socket on each listen address
/// (SO_REUSEPORT: the kernel spreads clients over the loops by their address and port),
/// its own upstream sockets and the queries waiting on them. Everything here is confined
/// to `loop`, so nothing locks; what the loops share (the grants, each client's bound,
/// the counters' sum) is the proxy's. The first shard also serves TCP.
///
/// What a pod must not be able to do to it (docs/dns.md, "Threat model"): forge an
/// upstream answer (each query leaves from one of many connected sockets on random
/// ports with a CSPRNG ID and a case-randomized name; only the upstream's address,
/// that socket, that ID and exactly that question are accepted), exhaust it (idle
/// TCP closed, connections and waiting queries bounded per client and in all), or
/// inherit another pod's decisions (caches key on values that never repeat).
/// (`@unchecked Sendable`: handed to its loop's tasks; touched only on that loop.)
final class ProxyShard: @unchecked Sendable {
    /// A query waiting for the upstream (a class: it moves between tables and handlers, copied by reference).
    final class PendingQuery: @unchecked Sendable {
        let client: Client
        /// Who asked; bounds are per client.
        let clientKey: ClientKey
        let query: DNSMessage
        let question: DNSMessage.Question
        /// The question section as sent upstream (name with its randomized case, type, class).
        let sentQuestion: [UInt8]
        var upstreamID: UInt16
        /// Which upstream socket its read burst's queries leave on, when it is the burst's first (drawn with the ID).
        let socketChoice: UInt16
        let ifindex: UInt32?
        let admission: GrantKeeper.Admission
        let deadline: NIODeadline
        /// The largest UDP answer the client takes (512, or its EDNS payload size).
        let sizeLimit: Int
        /// The truncated UDP answer that sent this query over TCP (relayed if the full one does not fit).
        var truncated: DNSMessage?

        init(client: Client, clientKey: ClientKey, query: DNSMessage, question: DNSMessage.Question, sentQuestion: [UInt8], upstreamID: UInt16,
             socketChoice: UInt16, ifindex: UInt32?, admission: GrantKeeper.Admission, deadline: NIODeadline, sizeLimit: Int) {
            self.client = client
            self.clientKey = clientKey
            self.query = query
            self.question = question
            self.sentQuestion = sentQuestion
            self.upstreamID = upstreamID
            self.socketChoice = socketChoice
            self.ifindex = ifindex
            self.admission = admission
            self.deadline = deadline
            self.sizeLimit = sizeLimit
        }
    }

    /// Who a client is for its bounds: the interface its packets come through (a pod's
    /// host veth, which the pod cannot forge), else its address.
    enum ClientKey: Hashable, Sendable {
        case interface(UInt32)
        case address(String)

        init(ifindex: UInt32?, address: SocketAddress?) {
            if let ifindex { self = .interface(ifindex) } else { self = .address(address?.ipAddress ?? "unknown") }
        }
    }

    /// Where an answer goes back to.
    enum Client: Sendable {
        case udp(channel: Channel, address: SocketAddress)
        case tcp(channel: Channel)
    }

    /// One connected upstream socket: its queries by ID; replaced after a number of them.
    /// (`@unchecked Sendable`: handed to its loop's callbacks; touched only on that loop.)
    final class UpstreamSocket: @unchecked Sendable {
        let channel: Channel
        var pending: [UInt16: PendingQuery] = [:]
        var sent = 0
        /// Its replacement is opening; it carries queries until that one is open.
        var replacing = false
        var retiring = false
        init(channel: Channel) { self.channel = channel }
    }

    unowned let proxy: DNSProxy
    let loop: EventLoop
    private let configuration: ProxyConfiguration
    private let keeper: GrantKeeper
    private let upstreamAddress: SocketAddress
    private let upstreamTimeout: TimeAmount
    /// How many TCP client connections may be open at once (bounded by the descriptors this process may hold).
    private let tcpConnectionLimit: Int
    private var random = BufferedRandom()
    /// The sockets new queries go out on; retiring ones wait in `retired` for their last answers.
    private var upstreams: [UpstreamSocket] = []
    private var retired: [UpstreamSocket] = []
    /// Replacements opening now: each holds a descriptor too, counted with the retired ones against their bound.
    private var replacementsOpening = 0
    /// No replacement opens before this after one failed to (out of descriptors, say): the old sockets serve meanwhile.
    private var replacementsResume = NIODeadline.uptimeNanoseconds(0)
    /// Every upstream socket by its channel, for the answers that arrive on it.
    private var socketsByChannel: [ObjectIdentifier: UpstreamSocket] = [:]
    private var servers: [Channel] = []
    private var routes: RouteLookup
    private(set) var counters = DNSProxyStats()
    private var connectionsByClient: [ClientKey: Int] = [:]
    private var connections = 0
    private var stopping = false
    /// UDP channels written to since their last flush: flushed when a read burst ends, so a
    /// burst of datagrams leaves in one sendmmsg.
    private var unflushed: Set<ObjectIdentifier> = []
    /// The upstream socket this read burst's queries leave on (drawn at random for each burst),
    /// so they too leave in one sendmmsg.
    private var burstUpstream: UpstreamSocket?
    /// The pod records looked up, by interface, since netfence last changed pods (`podsGeneration`):
    /// a pod's queries and their answers read its record once per change of pods, not once each.
    private var knownPods: [UInt32: PodRecord?] = [:]
    private var podsGeneration: UInt64?

    init(proxy: DNSProxy, loop: EventLoop, tcpConnectionLimit: Int) throws {
        self.proxy = proxy
        self.loop = loop
        configuration = proxy.configuration
        keeper = proxy.keeper
        upstreamAddress = try SocketAddress(ipAddress: configuration.upstream.host, port: configuration.upstream.port)
        let (seconds, attoseconds) = configuration.upstreamTimeout.components
        upstreamTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        routes = try RouteLookup()
        self.tcpConnectionLimit = tcpConnectionLimit
    }

    /// Binds this shard's UDP socket on `endpoint` (shared with the other shards' by SO_REUSEPORT).
    func bindDatagrams(_ endpoint: ProxyEndpoint) -> EventLoopFuture<Channel> {
        DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .channelOption(.receivePacketInfo, value: true)
            // Queries arrive 16 to a recvmmsg, each in 4 KiB (a longer one is cut and dropped as malformed).
            .channelOption(.datagramVectorReadMessageCount, value: 16)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 4096))
            .channelOption(.maxMessagesPerRead, value: 4)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ClientDatagramHandler(shard: self)) }
            }
            .bind(host: endpoint.host, port: endpoint.port)
    }

    /// Binds the TCP listener on `endpoint`; its connections are served on this shard's loop.
    func bindStreams(_ endpoint: ProxyEndpoint) -> EventLoopFuture<Channel> {
        let idle = configuration.tcpIdleTimeout.components
        let idleTimeout = TimeAmount.nanoseconds(idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000)
        return ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let key = admitConnection(channel) else {
                        channel.close(promise: nil)
                        return
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: idleTimeout),
                        ByteToMessageHandler(DNSStreamFrameDecoder()), ClientStreamHandler(shard: self, clientKey: key),
                    ])
                }
            }
            .bind(host: endpoint.host, port: endpoint.port)
    }

    /// Starts serving on channels bound for it: `upstreams` the connected upstream sockets, `servers` the rest.
    func serve(upstreams bound: [Channel], servers: [Channel]) {
        loop.preconditionInEventLoop()
        upstreams = bound.map(UpstreamSocket.init)
        for socket in upstreams { socketsByChannel[ObjectIdentifier(socket.channel)] = socket }
        self.servers = servers
    }

    /// Stops: every channel it holds, to be closed, and what it counted.
    func stop() -> (channels: [Channel], counters: DNSProxyStats) {
        loop.preconditionInEventLoop()
        stopping = true
        let channels = servers + (upstreams + retired).map(\.channel)
        servers = []
        upstreams = []
        retired = []
        socketsByChannel = [:]
        return (channels, counters)
    }

    /// A UDP socket connected to the upstream from a port the kernel picks at random:
    /// datagrams from any other address or port never reach it.
    func openUpstream() -> EventLoopFuture<Channel> {
        DatagramBootstrap(group: loop)
            .channelOption(.maxMessagesPerRead, value: 16)
            // An answer may be as large as the client's EDNS size, up to a whole datagram: NIO's 2 KiB default cut larger ones.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UpstreamDatagramHandler(shard: self)) }
            }
            .connect(to: upstreamAddress)
    }

    // MARK: clients (on the loop)

    /// A new TCP client connection: its key, or nil when the client or the proxy holds as many as allowed.
    func admitConnection(_ channel: Channel) -> ClientKey? {
        let key = ClientKey(ifindex: interface(of: channel.remoteAddress), address: channel.remoteAddress)
        guard connections < tcpConnectionLimit, connectionsByClient[key, default: 0] < configuration.tcpConnectionsPerClient else {
            counters[.clientLimited] += 1
            return nil
        }
        connections += 1
        connectionsByClient[key, default: 0] += 1
        return key
    }

    func connectionClosed(clientKey: ClientKey, idle: Bool) {
        connections -= 1
        connectionsByClient[clientKey, default: 1] -= 1
        if connectionsByClient[clientKey] == 0 { connectionsByClient[clientKey] = nil }
        if idle { counters[.idleClosed] += 1 }
    }

    // MARK: queries (on the loop)

    /// A query from a pod (or any client): refused, or forwarded upstream.
    func received(query bytes: [UInt8], from client: Client, ifindex: UInt32?, clientKey givenKey: ClientKey? = nil) {
        guard let query = try? DNSMessage(parsing: bytes), !query.isResponse else { return }  // not a DNS query: nothing to answer
        counters[.queries] += 1
        guard query.questions.count == 1, let question = query.questions.first, let sent = Self.questionSection(of: bytes).map(Array.init) else {
            return respond(to: client, query.reply(responseCode: DNSMessage.ResponseCode.formatError))
        }
        var admission: GrantKeeper.Admission
        do {
            admission = try keeper.admit(pod: ifindex.flatMap(pod), name: question.name)
        } catch {
            counters[.failed] += 1
            return respond(to: client, query.reply(responseCode: DNSMessage.ResponseCode.serverFailure))
        }
        if case .refused = admission {
            guard configuration.refusalCode == nil else {
                counters[.refused] += 1
                return respond(to: client, query.reply(responseCode: configuration.refusalCode!))
            }
            admission = .unrestricted  // not filtering DNS: answered, granted nothing
        }
        let key: ClientKey
        switch client {
        case .udp(_, let address): key = ClientKey(ifindex: ifindex, address: address)
        case .tcp: key = givenKey ?? ClientKey(ifindex: ifindex, address: nil)
        }
        guard proxy.claimWaiting(for: key) else {
            counters[.clientLimited] += 1
            counters[.failed] += 1
            return respond(to: client, query.reply(responseCode: DNSMessage.ResponseCode.serverFailure))
        }
        counters[.forwarded] += 1
        let sizeLimit = query.additionals.first { $0.type == DNSMessage.RecordType.opt }.map { max(512, Int($0.recordClass)) } ?? 512
        // One draw of the CSPRNG per query: 16 bits of ID, 16 to pick the socket, 32 of letter case.
        let draw: UInt64 = random.next()
        let asked = configuration.caseRandomization ? randomizingCase(sent, bits: draw >> 32) : sent
        let waiting = PendingQuery(client: client, clientKey: key, query: query, question: question, sentQuestion: asked,
                                   upstreamID: UInt16(truncatingIfNeeded: draw), socketChoice: UInt16(truncatingIfNeeded: draw >> 16), ifindex: ifindex,
                                   admission: admission, deadline: .now() + upstreamTimeout, sizeLimit: sizeLimit)
        switch client {
        case .udp: forwardOverUDP(waiting)
        case .tcp: forwardOverTCP(waiting)
        }
    }

    /// The question section of a message (its name, type and class), as bytes; the
    /// first name of a message cannot be compressed, so it is the bytes at offset 12.
    static func questionSection(of bytes: [UInt8]) -> ArraySlice<UInt8>? {
        var offset = 12
        while offset < bytes.count {
            let length = Int(bytes[offset])
            if length == 0 { break }
            guard length < 64 else { return nil }
            offset += 1 + length
        }
        guard offset + 5 <= bytes.count else { return nil }
        return bytes[12..<offset + 5]
    }

    /// `question` with the case of each letter of its name set at random (0x20 bits): the first 32 letters
    /// from `bits`, any further ones from fresh draws.
    private func randomizingCase(_ question: [UInt8], bits first: UInt64) -> [UInt8] {
        var result = question
        var offset = 0
        var bits = first
        var used = 32
        while offset < result.count, result[offset] != 0 {
            let length = Int(result[offset])
            for index in offset + 1..<min(offset + 1 + length, result.count) where result[index] | 0x20 >= 0x61 && result[index] | 0x20 <= 0x7a {
                if used == 64 { bits = random.next(); used = 0 }
                result[index] = bits & 1 == 0 ? result[index] | 0x20 : result[index] & ~0x20
                bits >>= 1
                used += 1
            }
            offset += 1 + length
        }
        return result
    }

    /// The query as it goes upstream: its upstream ID and question.
    private func upstreamBytes(_ waiting: PendingQuery) -> [UInt8] {
        var bytes = waiting.query.bytes
        bytes[0] = UInt8(waiting.upstreamID >> 8)
        bytes[1] = UInt8(waiting.upstreamID & 0xff)
        bytes.replaceSubrange(12..<12 + waiting.sentQuestion.count, with: waiting.sentQuestion)
        return bytes
    }

    private func forwardOverUDP(_ waiting: PendingQuery) {
        guard !upstreams.isEmpty else { return fail(waiting) }
        let socket = burstUpstream.flatMap { $0.retiring ? nil : $0 } ?? upstreams[Int(waiting.socketChoice) % upstreams.count]
        burstUpstream = socket
        // A fresh random ID when this socket has the drawn one waiting already.
        while socket.pending[waiting.upstreamID] != nil { waiting.upstreamID = UInt16.random(in: 0...UInt16.max, using: &random) }
        socket.pending[waiting.upstreamID] = waiting
        socket.sent += 1
        socket.channel.write(socket.channel.allocator.buffer(bytes: upstreamBytes(waiting)), promise: nil)
        unflushed.insert(ObjectIdentifier(socket.channel))
        // Retiring sockets wait for their answers (a silent upstream: its timeout): they and the replacements opening
        // stay within three sets, the descriptors DNSProxy budgets for beside the live set; past that a socket carries
        // more queries than its share until some close.
        if socket.sent >= configuration.queriesPerSocket, !socket.replacing,
           retired.count + replacementsOpening < 3 * configuration.upstreamSockets, NIODeadline.now() >= replacementsResume {
            replace(socket)
        }
    }

    /// Opens a replacement for `socket` on a fresh port; once it is open, `socket` is taken out of use (it stays
    /// open for the answers it waits for). When none opens, `socket` serves on and the next try waits half a second:
    /// a loop never runs out of upstream sockets, and a failing open is not retried for every query.
    private func replace(_ socket: UpstreamSocket) {
        socket.replacing = true
        replacementsOpening += 1
        openUpstream().whenComplete { [self] result in
            socket.replacing = false
            replacementsOpening -= 1
            guard case .success(let channel) = result else {
                replacementsResume = .now() + .milliseconds(500)
                return
            }
            guard !stopping, let index = upstreams.firstIndex(where: { $0 === socket }) else { return channel.close(promise: nil) }
            let fresh = UpstreamSocket(channel: channel)
            socketsByChannel[ObjectIdentifier(channel)] = fresh
            upstreams[index] = fresh
            socket.retiring = true
            retired.append(socket)
            closeIfDone(socket)
        }
    }

    private func closeIfDone(_ socket: UpstreamSocket) {
        guard socket.retiring, socket.pending.isEmpty else { return }
        retired.removeAll { $0 === socket }
        socketsByChannel[ObjectIdentifier(socket.channel)] = nil
        // Closed once the loop is done with this event: a channel closed inside its own read ends the read
        // burst without channelReadComplete, and the answer just written would wait for the next burst to leave.
        let channel = socket.channel
        loop.execute { channel.close(promise: nil) }
    }

    /// One TCP connection upstream per query: DNS over TCP is the exception (TCP
    /// clients, truncated answers), so no connection is kept.
    private func forwardOverTCP(_ waiting: PendingQuery) {
        let connecting = ClientBootstrap(group: loop)
            .connectTimeout(max(.zero, waiting.deadline - .now()))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(DNSStreamFrameDecoder()), UpstreamStreamHandler(shard: self, waiting: waiting),
                    ])
                }
            }
            .connect(to: upstreamAddress)
        connecting.whenComplete { [self] result in
            switch result {
            case .failure:
                fail(waiting)
                readBurstEnded()
            case .success(let channel):
                channel.writeAndFlush(channel.allocator.buffer(bytes: Self.framed(upstreamBytes(waiting))), promise: nil)
                channel.eventLoop.scheduleTask(deadline: waiting.deadline) { channel.close(promise: nil) }
            }
        }
    }

    /// Whether `bytes` answer `waiting`: from the upstream, a response with its upstream ID and exactly its question.
    private func answers(_ bytes: [UInt8], _ waiting: PendingQuery) -> DNSMessage? {
        guard bytes.count >= 12, UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == waiting.upstreamID,
              UInt16(bytes[4]) << 8 | UInt16(bytes[5]) == 1, Self.questionSection(of: bytes)?.elementsEqual(waiting.sentQuestion) == true,
              let answer = try? DNSMessage(parsing: bytes), answer.isResponse else { return nil }
        return answer
    }

    /// An upstream datagram on `channel`: the answer to one of its pending queries, or
    /// a forgery, dropped and counted. The pending query stays for the real answer.
    func receivedUpstream(datagram bytes: [UInt8], from source: SocketAddress, on channel: Channel) {
        guard let socket = socketsByChannel[ObjectIdentifier(channel)] else { return }
        let id = bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : 0
        guard source == upstreamAddress, let waiting = socket.pending[id], let answer = answers(bytes, waiting) else {
            counters[.spoofed] += 1
            return
        }
        socket.pending[id] = nil
        closeIfDone(socket)
        if answer.isTruncated {
            counters[.retriedOverTCP] += 1
            waiting.truncated = answer
            return forwardOverTCP(waiting)
        }
        deliver(answer, for: waiting)
    }

    /// An upstream TCP answer to `waiting` (nil: the connection ended without one).
    func receivedUpstream(stream bytes: [UInt8]?, for waiting: PendingQuery) {
        defer { readBurstEnded() }  // a UDP client's answer, outside any UDP read burst
        guard let bytes else { return fail(waiting) }
        guard let answer = answers(bytes, waiting) else {
            counters[.spoofed] += 1
            return fail(waiting)
        }
        deliver(answer, for: waiting)
    }

    /// Grants what the answer resolved, then releases it with its TTLs capped, the
    /// client's ID and the client's spelling of the name.
    private func deliver(_ answer: DNSMessage, for waiting: PendingQuery) {
        var cap: UInt32?
        if case .allowed(let podID, let patterns) = waiting.admission {
            let resolved = answer.resolved(for: waiting.question.name)
            if !resolved.isEmpty {
                do {
                    // The pod behind the interface must still be the one that asked (never grant a successor).
                    guard let ifindex = waiting.ifindex, try pod(ifindex)?.podID == podID else { return fail(waiting) }
                    cap = try keeper.grant(podID: podID, patterns: patterns, resolved: resolved)
                    counters[.granted] += UInt64(resolved.count)
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
        // The client's spelling: its question is as long as the one sent (only the case of letters differs).
        let questionEnd = 12 + waiting.sentQuestion.count
        if waiting.query.bytes.count >= questionEnd, bytes.count >= questionEnd {
            bytes.replaceSubrange(12..<questionEnd, with: waiting.query.bytes[12..<questionEnd])
        }
        finished(waiting)
        respond(to: waiting.client, bytes)
    }

    private func fail(_ waiting: PendingQuery) {
        counters[.failed] += 1
        finished(waiting)
        respond(to: waiting.client, waiting.query.reply(responseCode: DNSMessage.ResponseCode.serverFailure))
    }

    private func finished(_ waiting: PendingQuery) {
        proxy.releaseWaiting(for: waiting.clientKey)
    }

    func expirePending() {
        let now = NIODeadline.now()
        for socket in upstreams + retired {
            for (id, waiting) in socket.pending where waiting.deadline < now {
                socket.pending[id] = nil
                fail(waiting)
            }
            closeIfDone(socket)
        }
        readBurstEnded()
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

    /// The record of the pod on host interface `ifindex` (nil: none), read again once netfence changed pods.
    private func pod(_ ifindex: UInt32) throws -> PodRecord? {
        // The count first: a change after it is read moves it again, and the record is read anew next time.
        let generation = keeper.datapath.generations[DatapathGeneration.pods.rawValue]
        if generation != podsGeneration {
            knownPods.removeAll(keepingCapacity: true)
            podsGeneration = generation
        }
        if let known = knownPods[ifindex] { return known }
        let record = try keeper.datapath.pod(ifindex: ifindex)
        knownPods[ifindex] = .some(record)
        return record
    }

    /// A read burst ended: what it wrote over UDP leaves now; the next burst draws its own upstream socket.
    func readBurstEnded() {
        burstUpstream = nil
        guard !unflushed.isEmpty else { return }
        for channel in servers where unflushed.contains(ObjectIdentifier(channel)) { channel.flush() }
        for identifier in unflushed { socketsByChannel[identifier]?.channel.flush() }
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
