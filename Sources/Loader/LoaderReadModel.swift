import BPFKit
import Datapath
import DatapathModel
import Glibc
import HostKit

/// How full one of the datapath's maps is.
public struct MapFill: Encodable, Sendable {
    public let name: String
    public let entries: Int
    public let maxEntries: Int
    /// Percent of `maxEntries` in use, one decimal.
    public var fillPercent: Double { maxEntries == 0 ? 0 : (Double(entries) * 1000 / Double(maxEntries)).rounded() / 10 }

    enum CodingKeys: String, CodingKey { case name, entries, maxEntries, fillPercent }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(entries, forKey: .entries)
        try container.encode(maxEntries, forKey: .maxEntries)
        try container.encode(fillPercent, forKey: .fillPercent)
    }
}

/// A DNS proxy as the datapath knows it: its address, its process, whether its heartbeat is recent.
public struct DNSProxyState: Encodable, Sendable {
    public let address: String
    public let port: UInt16
    public let pid: UInt32
    /// Its process lives and its heartbeat is recent: grants allow new flows.
    public let running: Bool
    public let heartbeatAgeSeconds: Double?
    /// What the proxy counted since it started (`spoofed`: upstream answers dropped as forged), by counter name.
    public let counters: [String: UInt64]
}

extension Loader {
    /// The fill of the maps that grow with the node: pods, conntrack, fragments, domain grants.
    public func mapFill() throws -> [MapFill] {
        try [("pods", datapath.pods), ("conntrack", datapath.conntrack), ("fragments", datapath.fragments),
             ("domain_grants", datapath.domainGrants)].map { name, map in
            MapFill(name: name, entries: try map.countEntries() ?? 0, maxEntries: Int(try map.info().maxEntries))
        }
    }

    /// Every DNS proxy that registered, and whether it serves now.
    public func dnsProxies() throws -> [DNSProxyState] {
        let beat = try datapath.dnsHeartbeatNanoseconds()
        let now = BootClock.nanoseconds(CLOCK_MONOTONIC)
        let alive = beat != 0 && beat + DatapathLimits.dnsHeartbeatTimeoutNanoseconds > now
        return try datapath.registeredDNSProxies().map { address, record in
            let stats = (try? state.dnsProxyStats(address: address)) ?? nil
            return DNSProxyState(address: address.description, port: record.port, pid: record.pid,
                                 running: alive && record.pid != 0 && ProcessStatus.isRunning(pid_t(record.pid)),
                                 heartbeatAgeSeconds: beat == 0 ? nil : Double(now &- beat) / 1e9,
                                 counters: stats.map { stats in
                                     Dictionary(uniqueKeysWithValues: DNSProxyStats.Counter.allCases.map { ($0.description, stats[$0]) })
                                 } ?? [:])
        }
    }

    /// The ids of the two programs pinned under the root.
    public func programIDs() throws -> [String: UInt32] {
        ["nf_to_pod": try datapath.toPod.info().id, "nf_from_pod": try datapath.fromPod.info().id]
    }
}
