import BPFKit
import Datapath
import DatapathModel
import Loader

/// One metric family as Prometheus names it: its samples with their labels.
public struct MetricFamily: Encodable, Sendable {
    public struct Sample: Encodable, Sendable {
        /// Label name → value, in the order Prometheus text prints them.
        public let labels: [String: String]
        public let value: UInt64
        let labelOrder: [String]

        init(_ labels: KeyValuePairs<String, String> = [:], value: UInt64) {
            self.labels = Dictionary(uniqueKeysWithValues: labels.map { ($0.key, $0.value) })
            labelOrder = labels.map(\.key)
            self.value = value
        }

        enum CodingKeys: String, CodingKey { case labels, value }
    }

    public let name: String
    /// `counter` or `gauge`.
    public let type: String
    public let help: String
    public let samples: [Sample]
}

/// The datapath's counters: collected once, printed as Prometheus text
/// exposition format (version 0.0.4) or encoded as JSON.
public enum Metrics {
    /// Reads every counter now.
    public static func collect(_ loader: Loader) throws -> [MetricFamily] {
        let datapath = loader.datapath
        let pods = try loader.state.pods().sorted { $0.key < $1.key }
        var packets: [MetricFamily.Sample] = [], bytes: [MetricFamily.Sample] = []
        for (podID, pod) in pods {
            for direction in Direction.allCases {
                for verdict in [Verdict.allow, .deny] {
                    let counter = try datapath.counter(podID: podID, direction: direction, verdict: verdict)
                    let labels: KeyValuePairs = ["pod": pod.pod.description, "direction": direction.description, "verdict": verdict.description]
                    packets.append(.init(labels, value: counter.packets))
                    bytes.append(.init(labels, value: counter.bytes))
                }
            }
        }
        var suppressed: [MetricFamily.Sample] = []
        for (podID, direction, counts) in try datapath.suppressedEvents() {
            guard let pod = pods.first(where: { $0.key == podID })?.value else { continue }  // a detached pod's, until its id is reused
            for verdict in Verdict.allCases {
                guard let count = counts.byVerdict[verdict], count > 0 else { continue }
                suppressed.append(.init(["pod": pod.pod.description, "direction": direction.description, "verdict": verdict.description],
                                        value: count))
            }
        }
        var families = [
            MetricFamily(name: "netfence_packets_total", type: "counter",
                         help: "Packets the datapath passed or dropped, by pod, direction and verdict.", samples: packets),
            MetricFamily(name: "netfence_bytes_total", type: "counter",
                         help: "Bytes the datapath passed or dropped, by pod, direction and verdict.", samples: bytes),
        ]
        for (stat, name, help) in [
            (DatapathStat.eventsLost, "netfence_events_lost_total", "Verdict events not written because their CPU's event ring was full."),
            (.unparseableDrops, "netfence_unparseable_drops_total", "Packets dropped because their headers could not be parsed."),
            (.unknownInterface, "netfence_unknown_interface_packets_total", "Packets on an interface with no registered pod."),
            (.conntrackFull, "netfence_conntrack_insert_failures_total", "Allowed flows that could not be entered in conntrack."),
        ] {
            families.append(MetricFamily(name: name, type: "counter", help: help, samples: [.init(value: try datapath.stat(stat))]))
        }
        families.append(MetricFamily(name: "netfence_events_suppressed_total", type: "counter",
                                     help: "Verdict events the rate limits kept out of the ring, by pod, direction and verdict.", samples: suppressed))
        let conntrack = try datapath.fill(ofMap: "conntrack")
        families += [
            MetricFamily(name: "netfence_conntrack_entries", type: "gauge", help: "Flows in the conntrack table.",
                         samples: [.init(value: UInt64(conntrack.entries))]),
            MetricFamily(name: "netfence_conntrack_capacity", type: "gauge", help: "Flows the conntrack table holds at most.",
                         samples: [.init(value: UInt64(conntrack.maxEntries))]),
            MetricFamily(name: "netfence_pods", type: "gauge", help: "Pods attached on this node.", samples: [.init(value: UInt64(pods.count))]),
        ]
        // By policy and rule, summed over pods so the label set stays bounded by the rules applied (no pod label).
        let flows = try loader.ruleFlowTotals()
        families.append(MetricFamily(
            name: "netfence_rule_flows_total", type: "counter",
            help: "New flows each rule decided (rule isolation/default: the pods' own), by verdict; summed over pods.",
            samples: flows.filter { !$0.audit }.flatMap { flow in
                [(Verdict.allow, flow.allowed), (.deny, flow.denied)].filter { $0.1 > 0 }.map { verdict, count in
                    MetricFamily.Sample(["policy": flow.policy, "rule": flow.rule, "tier": flow.tier.description, "verdict": verdict.description],
                                        value: count)
                }
            }))
        families.append(MetricFamily(
            name: "netfence_audit_flows_total", type: "counter",
            help: "New flows audit objects would have decided otherwise, by what they would have done; summed over pods.",
            samples: flows.filter(\.audit).flatMap { flow in
                [("would-allow", flow.allowed), ("would-deny", flow.denied)].filter { $0.1 > 0 }.map { verdict, count in
                    MetricFamily.Sample(["policy": flow.policy, "rule": flow.rule, "tier": flow.tier.description, "verdict": verdict], value: count)
                }
            }))
        let proxies = try loader.dnsProxies().filter { !$0.counters.isEmpty }
        for counter in DNSProxyStats.Counter.allCases {
            families.append(MetricFamily(
                name: "netfence_dns_\(counter)_total", type: "counter", help: Self.help(counter),
                samples: proxies.map { .init(["proxy": $0.address], value: $0.counters[counter.description] ?? 0) }))
        }
        return families
    }

    /// Reads every counter now and renders them as Prometheus text.
    public static func render(_ loader: Loader) throws -> String {
        prometheusText(try collect(loader))
    }

    /// `families` in the text exposition format.
    public static func prometheusText(_ families: [MetricFamily]) -> String {
        var out = ""
        for family in families {
            out += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
            for sample in family.samples {
                let labels = sample.labelOrder.map { "\($0)=\"\(escape(sample.labels[$0] ?? ""))\"" }
                out += family.name + (labels.isEmpty ? "" : "{\(labels.joined(separator: ","))}") + " \(sample.value)\n"
            }
        }
        return out
    }

    static func help(_ counter: DNSProxyStats.Counter) -> String {
        switch counter {
        case .queries: "DNS queries the proxy received."
        case .forwarded: "Queries the proxy sent upstream."
        case .refused: "Queries for names no domain rule of the pod allows."
        case .granted: "Addresses written into domain grants."
        case .failed: "Queries answered with SERVFAIL."
        case .retriedOverTCP: "Truncated UDP answers asked again over TCP."
        case .spoofed: "Upstream answers dropped: wrong source, ID or question (forged)."
        case .clientLimited: "Queries or TCP connections refused over a client's or the proxy's bound."
        case .idleClosed: "TCP client connections closed after idling."
        }
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
