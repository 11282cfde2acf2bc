import CommandTree
import DatapathModel
import Foundation

/// How events print as a table (`ebpf events` without `-o json`): a header,
/// then one line each, columns as wide as the node's pod names; untrusted
/// text escaped, verdicts colored on request.
public struct EventLine {
    /// `2026-11-23T13:59:01.123Z`.
    static let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let flowWidth = 46

    let podWidth: Int

    public init(longestPodName: Int) { podWidth = max(24, longestPodName) }

    public var header: String {
        [Self.pad("TIME", 24), Self.pad("POD", podWidth), Self.pad("IFACE", 15), Self.pad("DIR", 7), Self.pad("PROTO", 6),
         Self.pad("FLOW", Self.flowWidth), "VERDICT", Self.pad("TIER", 14), "DECIDED BY", "BYTES"].joined(separator: " ")
    }

    public func text(_ event: DecodedEvent, colored: Bool) -> String {
        let endpoint = { (address: IPAddress, port: UInt16) in
            let host = event.family == .ipv6 ? "[\(address.text(as: .ipv6))]" : address.text(as: .ipv4)
            return port == 0 ? host : "\(host):\(port)"
        }
        let verdict = event.verdict.description.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)
        let paint = colored ? (event.verdict == .deny ? "\u{1b}[31m" : "\u{1b}[32m") : ""
        let reset = colored ? "\u{1b}[0m" : ""
        let flow = "\(endpoint(event.source, event.sourcePort)) → \(endpoint(event.destination, event.destinationPort))"
            + (event.icmpID.map { " id \($0)" } ?? "")
        return [Self.timeStyle.format(event.time), Self.pad(TerminalText.escaped(event.pod), podWidth),
                Self.pad(TerminalText.escaped(event.interface ?? "-"), 15), Self.pad(event.direction.description, 7), Self.pad(event.proto, 6),
                Self.pad(flow, Self.flowWidth), paint + verdict + reset, Self.pad(event.tier.description, 14),
                TerminalText.escaped(Self.decidedBy(event)), "\(event.bytes)B"].joined(separator: " ")
    }

    /// The policy and rule, and why when it was not the rule's own verdict: a
    /// domain rule whose grant expired (or whose proxy is down) names the rule
    /// that would have allowed, after the reason that denied.
    public static func decidedBy(_ event: DecodedEvent) -> String {
        let named = event.rule.map { "\(event.policy) rule \($0)" } ?? event.policy
        switch event.reason {
        case .policy: return named
        case .domainExpired, .dnsProxyDown: return "\(event.reason) (\(named) would allow)"
        default: return "\(named) (\(event.reason))"
        }
    }

    public static func lost(_ count: UInt64, colored: Bool) -> String {
        (colored ? "\u{1b}[33m" : "") + "LOST \(count) events (their CPU's event ring was full)" + (colored ? "\u{1b}[0m" : "")
    }

    public static func skipped(atMost count: UInt64, colored: Bool) -> String {
        (colored ? "\u{1b}[33m" : "") + "SKIPPED up to \(count) events (this reader fell a ring behind; the flow log has them)"
            + (colored ? "\u{1b}[0m" : "")
    }

    /// `SUPPRESSED 4213 deny events of prod/db-0 ingress in the last 10 s (event rate limit)`.
    public static func suppressed(_ report: SuppressedEvents, colored: Bool) -> String {
        let when = report.seconds.map { "in the last \(Int($0.rounded())) s" } ?? "before this reader started"
        return (colored ? "\u{1b}[33m" : "") + "SUPPRESSED \(report.countsText) events of \(TerminalText.escaped(report.pod)) \(report.direction) "
            + "\(when) (event rate limit)" + (colored ? "\u{1b}[0m" : "")
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }
}
