import DNS
import Foundation

/// An address and port the proxy listens on or forwards to.
public struct ProxyEndpoint: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `198.18.0.53`, `198.18.0.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`;
    /// nil for anything else. A missing port is `defaultPort`.
    public init?(_ text: String, defaultPort: Int = 53) {
        var host = Substring(text), port = defaultPort
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let parsed = Int(rest.dropFirst()) else { return nil }
                port = parsed
            }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            guard let parsed = Int(host[host.index(after: colon)...]) else { return nil }
            port = parsed
            host = host[..<colon]
        }
        var v4 = in_addr(), v6 = in6_addr()
        guard (1...65535).contains(port), inet_pton(AF_INET, String(host), &v4) == 1 || inet_pton(AF_INET6, String(host), &v6) == 1 else {
            return nil
        }
        self.init(host: String(host), port: port)
    }

    public var isIPv6: Bool { host.contains(":") }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The first `nameserver` of a resolv.conf, at port 53.
    public static func firstNameserver(resolvConf: String) -> ProxyEndpoint? {
        for line in resolvConf.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "nameserver", let endpoint = ProxyEndpoint(String(words[1]).split(separator: "%").first.map(String.init) ?? "") {
                return endpoint
            }
        }
        return nil
    }
}

/// How `netfence dns proxy` runs.
public struct ProxyConfiguration: Sendable {
    /// Where pods send DNS (each gets a UDP and a TCP socket).
    public var listen: [ProxyEndpoint]
    /// Where allowed queries go.
    public var upstream: ProxyEndpoint
    /// Learned TTLs are clamped into this range (seconds) before they become expiries.
    public var ttlBounds: ClosedRange<UInt32> = 5...300
    /// How long an upstream may take before the pod gets SERVFAIL.
    public var upstreamTimeout: Duration = .seconds(2)
    /// What a pod gets for a name no rule allows: REFUSED, or NXDOMAIN; nil: the
    /// query is forwarded and answered, and grants nothing (NPEP-133: FQDN policy
    /// does not filter DNS).
    public var refusalCode: UInt8? = DNSMessage.ResponseCode.refused
    /// UDP sockets to the upstream, each connected from its own random port; a query
    /// goes out on one chosen at random (RFC 5452: port and ID both unguessable).
    public var upstreamSockets = 32
    /// Queries a socket carries before it is replaced by one on a fresh random port.
    public var queriesPerSocket = ProxyConfiguration.defaultQueriesPerSocket
    public static let defaultQueriesPerSocket = 1024
    /// Random upper/lower case in each name sent upstream (the "0x20" bits), echoed
    /// back exactly by a real answer: more bits a forger must guess.
    public var caseRandomization = true
    /// A TCP client connection with no query for this long is closed.
    public var tcpIdleTimeout: Duration = .seconds(5)
    /// TCP connections one client (a pod's interface, else its address) may hold, and all together.
    public var tcpConnectionsPerClient = 32
    public var tcpConnections = 1024
    /// Queries one client may have waiting for the upstream; more get SERVFAIL at once.
    public var pendingPerClient = 128
    /// How long a grant outlives its expiry (flows established under it survive a policy change meanwhile).
    public var retention: Duration = .seconds(3600)

    public init(listen: [ProxyEndpoint], upstream: ProxyEndpoint) {
        self.listen = listen
        self.upstream = upstream
    }
}
