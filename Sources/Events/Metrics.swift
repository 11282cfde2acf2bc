import BPFKit
import Datapath
import DatapathModel
import Loader

/// The datapath's counters in Prometheus text exposition format (version 0.0.4).
public enum Metrics {
    /// Reads every counter now and renders them.
    public static func render(_ loader: Loader) throws -> String {
        let datapath = loader.datapath
        let pods = try loader.state.pods().sorted { $0.key < $1.key }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("netfence_packets_total", "counter", "Packets the datapath passed or dropped, by pod, direction and verdict.")
        var bytes = ""
        for (podID, pod) in pods {
            for direction in Direction.allCases {
                for verdict in [Verdict.allow, .deny] {
                    let counter = try datapath.counter(podID: podID, direction: direction, verdict: verdict)
                    let labels = "{pod=\"\(escape("\(pod.namespace)/\(pod.name)"))\",direction=\"\(direction)\",verdict=\"\(verdict == .allow ? "allow" : "deny")\"}"
                    out += "netfence_packets_total\(labels) \(counter.packets)\n"
                    bytes += "netfence_bytes_total\(labels) \(counter.bytes)\n"
                }
            }
        }
        family("netfence_bytes_total", "counter", "Bytes the datapath passed or dropped, by pod, direction and verdict.")
        out += bytes
        for (stat, name, help) in [
            (DatapathStat.eventsLost, "netfence_events_lost_total", "Verdict events not written because the ring buffer was full."),
            (.unparseableDrops, "netfence_unparseable_drops_total", "Packets dropped because their headers could not be parsed."),
            (.unknownInterface, "netfence_unknown_interface_packets_total", "Packets on an interface with no registered pod."),
            (.conntrackFull, "netfence_conntrack_insert_failures_total", "Allowed flows that could not be entered in conntrack."),
        ] {
            family(name, "counter", help)
            out += "\(name) \(try datapath.stat(stat))\n"
        }
        family("netfence_conntrack_entries", "gauge", "Flows in the conntrack table.")
        out += "netfence_conntrack_entries \(try datapath.conntrack.countEntries() ?? 0)\n"
        family("netfence_conntrack_capacity", "gauge", "Flows the conntrack table holds at most.")
        out += "netfence_conntrack_capacity \(try datapath.conntrack.info().maxEntries)\n"
        family("netfence_pods", "gauge", "Pods attached on this node.")
        out += "netfence_pods \(pods.count)\n"
        return out
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
