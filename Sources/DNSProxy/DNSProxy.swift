import BPFKit
import Datapath
import DatapathModel
import DNS
import Glibc
import HostKit
import Loader
import NIOCore
import NIOPosix
import Synchronization

/// `netfence dns proxy`: pods with domain rules send DNS here. A name their live
/// policy allows is forwarded upstream; every address of the answer is granted to
/// the pod (`GrantKeeper`) before the answer goes back, with TTLs no longer than
/// the grant. The queries are served by shards, one per event loop (`ProxyShard`);
/// what they share is here: the grants (the keeper), each client's bound of waiting
/// queries, the heartbeat and the counters' sum.
public final class DNSProxy: @unchecked Sendable {
    public let configuration: ProxyConfiguration
    public let keeper: GrantKeeper
    private let state: LoaderState
    private let group: MultiThreadedEventLoopGroup
    /// One per event loop; the first serves TCP and beats the heartbeat.
    private var shards: [ProxyShard] = []
    /// Queries each client has waiting for the upstream, on every loop together.
    private let waiting = Mutex<[ProxyShard.ClientKey: Int]>([:])
    /// Each shard's counters as of its last beat (its own are confined to its loop).
    private let beaten: Mutex<[DNSProxyStats]>

    /// Shards by default: one per 4 CPUs this process may use, at most 4. The proxy shares the node's
    /// CPUs with the pods that ask it, and each further loop costs every answer some (locks shared
    /// across loops, more threads to wake): on 2 CPUs one loop answered as many queries as two, for
    /// 16.6 µs of CPU each rather than 18.1 (docs/dns.md). One loop answers some 60,000 a second there.
    public static var defaultEventLoops: Int { max(1, min(4, System.coreCount / 4)) }

    /// The file descriptors the proxy holds before any client connects: each loop's upstream sockets
    /// (up to four times as many while retiring ones wait for their last answers and fresh ones open,
    /// to be safe), its listen sockets, and some to spare for the process itself.
    static func descriptorsNeeded(configuration: ProxyConfiguration, eventLoops: Int) -> Int {
        256 + eventLoops * (4 * configuration.upstreamSockets + 2 * configuration.listen.count)
    }

    /// The process may hold fewer file descriptors than the proxy's loops need before any client connects.
    public struct TooFewDescriptors: Error, CustomStringConvertible {
        public let eventLoops: Int, needed: Int, limit: Int
        public var description: String {
            "\(eventLoops) event loops need about \(needed) file descriptors, and this process may hold \(limit)"
        }
    }

    /// `eventLoops`: how many shards serve queries.
    public init(configuration: ProxyConfiguration, datapath: Datapath, state: LoaderState, eventLoops: Int = DNSProxy.defaultEventLoops) throws {
        self.configuration = configuration
        self.state = state
        keeper = GrantKeeper(datapath: datapath, ttlBounds: configuration.ttlBounds,
                             retentionNanoseconds: UInt64(configuration.retention.components.seconds) * 1_000_000_000)
        let count = max(1, eventLoops)
        // Every socket is a descriptor: the proxy keeps half of what it may open beyond its own for client connections, at most the configured bound.
        let descriptors = DescriptorLimit.raiseToMaximum(), needed = Self.descriptorsNeeded(configuration: configuration, eventLoops: count)
        guard needed <= descriptors else { throw TooFewDescriptors(eventLoops: count, needed: needed, limit: descriptors) }
        let tcpConnectionLimit = max(16, min(configuration.tcpConnections, (descriptors - needed) / 2))
        group = MultiThreadedEventLoopGroup(numberOfThreads: count)
        beaten = Mutex([DNSProxyStats](repeating: DNSProxyStats(), count: count))
        do {
            shards = try group.makeIterator().map { try ProxyShard(proxy: self, loop: $0, tcpConnectionLimit: tcpConnectionLimit) }
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// The channel `future` opens; a socket the system refuses is a `SystemError` naming `operation` on `object`.
    private func opened(_ future: EventLoopFuture<Channel>, _ operation: String, _ object: String) throws -> Channel {
        do {
            return try future.wait()
        } catch let error as IOError {
            throw SystemError(operation, object, errno: error.errnoCode)
        }
    }

    /// Binds every listen address (UDP on each shard, TCP on the first) and each shard's
    /// upstream sockets, registers the addresses with the datapath (through `register`,
    /// which holds the loader's lock) and starts the heartbeat.
    public func start(register: (() throws -> Void) throws -> Void) throws {
        var bound: [Channel] = []
        do {
            for shard in shards {
                let first = bound.count
                for _ in 0..<max(1, configuration.upstreamSockets) {
                    bound.append(try opened(shard.openUpstream(), "connect a socket to the upstream", "\(configuration.upstream)"))
                }
                let upstreamsEnd = bound.count
                for endpoint in configuration.listen {
                    bound.append(try opened(shard.bindDatagrams(endpoint), "listen (UDP) on", endpoint.description))
                    if shard === shards[0] { bound.append(try opened(shard.bindStreams(endpoint), "listen (TCP) on", endpoint.description)) }
                }
                let upstreams = Array(bound[first..<upstreamsEnd]), servers = Array(bound[upstreamsEnd...])
                try shard.loop.submit { shard.serve(upstreams: upstreams, servers: servers) }.wait()
            }
        } catch {
            for channel in bound { try? channel.close().wait() }
            throw error
        }
        let started = HostClock.realtime.nanoseconds
        try register {
            for endpoint in configuration.listen {
                guard let address = IPAddress(endpoint.host) else { continue }
                try keeper.datapath.registerDNSProxy(address: address, DNSProxyRecord(pid: UInt32(getpid()), port: UInt16(endpoint.port),
                                                                                     startedNanoseconds: started))
            }
        }
        try beat()
        for (index, shard) in shards.enumerated() {
            shard.loop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [self] _ in
                let counted = shard.counters
                beaten.withLock { $0[index] = counted }
                if index == 0 { try? beat() }
                shard.expirePending()
            }
        }
        shards[0].loop.scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { [self] _ in
            _ = try? keeper.collectExpired()
        }
    }

    /// Stops serving: the heartbeat goes to 0 (grants allow no new flow from now on),
    /// the listen addresses stay registered (pods keep sending DNS nowhere else), and
    /// the sockets close. Returns what was counted.
    public func stop(register: (() throws -> Void) throws -> Void) -> DNSProxyStats {
        var total = DNSProxyStats()
        for shard in shards {
            guard let (channels, counted) = try? shard.loop.submit({ shard.stop() }).wait() else { continue }
            for channel in channels { try? channel.close().wait() }
            total.add(counted)
        }
        try? keeper.datapath.beatDNSHeartbeat(monotonicNanoseconds: 0)
        try? register {
            for endpoint in configuration.listen {
                guard let address = IPAddress(endpoint.host) else { continue }
                try keeper.datapath.registerDNSProxy(address: address, DNSProxyRecord(pid: 0, port: UInt16(endpoint.port), startedNanoseconds: 0))
            }
        }
        publish(total)
        try? group.syncShutdownGracefully()
        return total
    }

    /// What was counted so far, on every loop (from any thread).
    public func statistics() -> DNSProxyStats {
        var total = DNSProxyStats()
        for shard in shards { total.add((try? shard.loop.submit { shard.counters }.wait()) ?? DNSProxyStats()) }
        return total
    }

    /// Whether `client` may have one more query waiting; if so it is counted (`releaseWaiting` when answered).
    func claimWaiting(for client: ProxyShard.ClientKey) -> Bool {
        waiting.withLock { counts in
            guard counts[client, default: 0] < configuration.pendingPerClient else { return false }
            counts[client, default: 0] += 1
            return true
        }
    }

    func releaseWaiting(for client: ProxyShard.ClientKey) {
        waiting.withLock { counts in
            counts[client, default: 1] -= 1
            if counts[client] == 0 { counts[client] = nil }
        }
    }

    private func beat() throws {
        try keeper.datapath.beatDNSHeartbeat(monotonicNanoseconds: HostClock.monotonic.nanoseconds)
        publish(beaten.withLock { $0.reduce(into: DNSProxyStats()) { $0.add($1) } })
    }

    /// The counters, where `loader status` and `metrics` read them.
    private func publish(_ stats: DNSProxyStats) {
        guard let first = configuration.listen.first.flatMap({ IPAddress($0.host) }) else { return }
        try? state.publishDNSProxyStats(stats, address: first)
    }
}
