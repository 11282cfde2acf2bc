import BPFKit
import CommandTree
import DNS
import DNSProxy
import DatapathModel
import Foundation
import Loader
import Glibc
import HostKit

/// `netfence dns`: the DNS side of egress by domain name.
struct DNSCommand: Command {
    static let configuration = CommandConfiguration(
        name: "dns",
        abstract: "Run the DNS proxy that enforces egress rules by domain name.",
        discussion: "Pods with domainName rules may send DNS to the proxy only; see 'netfence dns proxy --help'.",
        subcommands: [DNSProxyCommand.self])

    init(parsed: ParsedArguments) {}
}

/// `netfence dns proxy`: the long-running daemon.
struct DNSProxyCommand: Command {
    static let configuration = CommandConfiguration(
        name: "proxy",
        abstract: "Serve DNS for pods with domain rules: refuse names no rule allows, grant what allowed names resolve to.",
        discussion: """
            Listens on each --listen address (UDP and TCP; pods are given it as their DNS server) and registers it with \
            the datapath: pods with domainName rules may send DNS there and nowhere else. A query for a name none of the \
            pod's rules allows is refused (REFUSED, or NXDOMAIN with --refuse-with nxdomain). An allowed query goes to \
            --upstream (default: the first nameserver of /etc/resolv.conf); every address of its answer (CNAME chains \
            followed, A and AAAA) is granted to that pod until its TTL runs out, clamped to --min-ttl..--max-ttl, before \
            the answer is released, and no TTL the pod sees is longer than its grant. If a grant cannot be written the \
            pod gets SERVFAIL. Truncated UDP answers are asked again over TCP. Runs until SIGINT or SIGTERM; while no \
            proxy runs, domain rules allow no new connection. A restarted proxy goes on with the grants in the pinned map.
            """)

    static let listen = Option<String>(long: "listen", valueName: "address[:port],...",
                                       help: "Where pods send DNS: addresses (IPv4 or [IPv6]), port 53 unless given.", default: "")
    static let upstream = Option<String?>(long: "upstream", valueName: "address[:port]", help: "The resolver allowed queries go to.",
                                          default: nil, showDefault: false)
    static let minTTL = Option<UInt32>(long: "min-ttl", valueName: "seconds", help: "Shortest grant, whatever the answer's TTL.", default: 5)
    static let maxTTL = Option<UInt32>(long: "max-ttl", valueName: "seconds", help: "Longest grant, whatever the answer's TTL.", default: 300)
    static let refuseWith = Option<RefusalCode>(
        long: "refuse-with", help: "The answer to a name no rule allows; forward: answered as asked, granting nothing (NPEP-133).",
        default: .refused)
    static let noCaseRandomization = Flag(long: "no-case-randomization",
                                          help: "Send names upstream as the pod spelled them (for a resolver that does not echo 0x20 case).")
    static let eventLoops = Option<Int>(long: "event-loops", valueName: "count",
                                        help: "Threads serving queries, each with its own socket on every listen address (default: one per 4 CPUs, at most 4).",
                                        default: DNSProxy.defaultEventLoops, showDefault: false)
    static let queriesPerSocket = Option<Int>(long: "queries-per-socket", valueName: "count",
                                              help: "Queries an upstream socket carries before one on a fresh random port replaces it.",
                                              default: ProxyConfiguration.defaultQueriesPerSocket)
    static let arguments = ([listen, upstream, minTTL, maxTTL, refuseWith, noCaseRandomization, eventLoops, queriesPerSocket, LockWait.timeout]
        as [any ArgumentDefining])
        .map(\.definition)

    let listen: [ProxyEndpoint?]
    let listenText: String
    let upstream: String?
    let ttlBounds: (UInt32, UInt32)
    let refusal: RefusalCode
    let caseRandomization: Bool
    let eventLoops: Int
    let queriesPerSocket: Int

    init(parsed: ParsedArguments) {
        listenText = parsed[Self.listen]
        listen = listenText.split(separator: ",").map { ProxyEndpoint(String($0)) }
        upstream = parsed[Self.upstream]
        ttlBounds = (parsed[Self.minTTL], parsed[Self.maxTTL])
        refusal = parsed[Self.refuseWith]
        caseRandomization = !parsed[Self.noCaseRandomization]
        eventLoops = parsed[Self.eventLoops]
        queriesPerSocket = parsed[Self.queriesPerSocket]
    }

    func validate() throws {
        if listenText.isEmpty { throw UsageError("--listen is required: the address pods send DNS to, e.g. --listen 198.18.0.53") }
        if let bad = zip(listenText.split(separator: ","), listen).first(where: { $0.1 == nil }) {
            throw UsageError("--listen: '\(bad.0)' is not an address or address:port (IPv6 as [2001:db8::53]:53)")
        }
        if let upstream, ProxyEndpoint(upstream) == nil { throw UsageError("--upstream: '\(upstream)' is not an address or address:port") }
        if ttlBounds.0 > ttlBounds.1 { throw UsageError("--min-ttl \(ttlBounds.0) is above --max-ttl \(ttlBounds.1)") }
        try Self.eventLoops.check(eventLoops, within: 1...64)
        try Self.queriesPerSocket.check(queriesPerSocket, within: 1...65_536)
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        let upstream: ProxyEndpoint
        if let given = self.upstream.flatMap({ ProxyEndpoint($0) }) {
            upstream = given
        } else {
            let resolvConf = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
            guard let first = ProxyEndpoint.firstNameserver(resolvConf: resolvConf) else {
                throw RuntimeError("/etc/resolv.conf names no nameserver", hint: "give the resolver with --upstream ADDRESS[:PORT]")
            }
            upstream = first
        }
        var configuration = ProxyConfiguration(listen: listen.compactMap { $0 }, upstream: upstream)
        configuration.ttlBounds = ttlBounds.0...ttlBounds.1
        configuration.refusalCode = refusal.code
        configuration.caseRandomization = caseRandomization
        configuration.queriesPerSocket = queriesPerSocket
        let proxy: DNSProxy
        do {
            proxy = try DNSProxy(configuration: configuration, datapath: loader.datapath, state: loader.state, eventLoops: eventLoops)
        } catch let error as DNSProxy.TooFewDescriptors {
            throw RuntimeError("--event-loops \(error.eventLoops) needs about \(error.needed) file descriptors, and this process may hold \(error.limit)",
                               hint: "give fewer event loops, or raise the limit (ulimit -n, LimitNOFILE=)")
        }
        // Registering its addresses is a change of the node: one writer at a time, briefly.
        let root = context.pinRoot, timeout = context.parsed[LockWait.timeout]
        let register = { (body: () throws -> Void) throws in try Loader.whileHoldingLock(root: root, waitingUpTo: timeout, body) }
        StopSignals.install()
        do {
            try proxy.start(register: register)
        } catch let error as LoaderError {
            _ = proxy.stop(register: register)
            throw error
        } catch let error as SystemError {
            _ = proxy.stop(register: register)
            throw RuntimeError("\(error)", hint: error.errno == EADDRINUSE ? "another DNS server is bound there" : "check --listen and --upstream")
        } catch {
            _ = proxy.stop(register: register)
            throw RuntimeError("could not listen on \(listenText): \(error)", hint: "is another DNS server bound there?")
        }
        let recovered = (try? loader.datapath.grants().count) ?? 0
        context.print("Serving DNS on \(configuration.listen.map(\.description).joined(separator: ", ")) for upstream \(upstream); "
            + "\(recovered) grants in the pinned map; until SIGINT or SIGTERM")
        while stopRequested == 0 { usleep(100_000) }
        let counted = proxy.stop(register: register)
        context.print("Stopped: " + DNSProxyStats.Counter.allCases.map { "\(counted[$0]) \($0)" }.joined(separator: ", "))
    }
}

/// `--refuse-with refused|nxdomain|forward`.
enum RefusalCode: String, ArgumentValue, CaseIterable, CustomStringConvertible {
    case refused, nxdomain, forward

    static var defaultValueName: String { "code" }
    var description: String { rawValue }

    /// The response code; nil: forwarded without a grant.
    var code: UInt8? {
        switch self {
        case .refused: DNSMessage.ResponseCode.refused
        case .nxdomain: DNSMessage.ResponseCode.nameError
        case .forward: nil
        }
    }
}
