import CommandTree
import DatapathModel
import Inspection
import Loader

/// `netfence policy`: why a flow is decided as it is, and what each pod enforces.
struct PolicyCommand: Command {
    static let configuration = CommandConfiguration(
        name: "policy",
        abstract: "Explain a pod's decision for a flow, or show the rules a pod enforces with their hits.",
        subcommands: [PolicyExplainCommand.self, PolicyShowCommand.self])

    init(parsed: ParsedArguments) {}
}

/// `netfence policy explain`.
struct PolicyExplainCommand: Command {
    static let configuration = CommandConfiguration(
        name: "explain",
        abstract: "Why a pod allows or denies a flow: the live state, tier by tier, confirmed by the loaded program.",
        discussion: """
            Reads the pod's live state (its record, live slot and revision, the entry of its live trie that holds the \
            peer, its domain grants, the DNS proxies) and decides the flow's first packet as the datapath does, tier \
            by tier: every rule on the peer's prefix and whether it matches, which rule decided and why, what audit \
            objects would decide, and the established flows that would pass it before policy is consulted. Then the \
            loaded program judges the same packet in a test run marked so that it changes nothing (no conntrack \
            entry, counter, hit or event): its verdict and rule must be the same. When they are not, that is a bug \
            in netfence: both answers are printed and the command exits 1.

            --port is the port the rules match: the pod's for ingress, the peer's for egress. --peer-port is the \
            peer's port of an ingress flow (its source port). ICMP and ICMPv6 take no port.

            --aws explains the AWS network-policy agent's decision on an EKS node instead, read-only, from its pinned \
            maps for the pod (its pod identifier from NAMESPACE/NAME) and by its own procedure: cluster-policy slots \
            by lowest priority (Deny before Accept before Pass at a tie; Admin up to 1000), then the network-policy \
            slots in order (a RESERVED one denies, the first match allows, none denies), then Baseline, then the \
            pod's state.
            """)

    static let pod = Option<PodReference>(long: "pod", help: "The pod, as NAMESPACE/NAME.")
    static let direction = Option<Direction>(long: "direction", help: "ingress (what the pod receives) or egress (what it sends).")
    static let peer = Option<IPAddress>(long: "peer", valueName: "address", help: "The other end of the flow.")
    static let proto = Option<ProtocolArgument>(long: "proto", help: "tcp, udp, sctp, icmp or icmpv6.", default: ProtocolArgument(argument: "tcp")!)
    static let port = Option<UInt16?>(long: "port", help: "The port the rules match (needed for tcp, udp, sctp).", default: nil, showDefault: false)
    static let peerPort = Option<UInt16?>(long: "peer-port", help: "The peer's port of an ingress flow.", default: nil, showDefault: false)
    static let aws = Flag(long: "aws", help: "Explain the AWS network-policy agent's decision from its maps (read-only).")
    static let arguments = ([pod, direction, peer, proto, port, peerPort, aws, AWSRoot.option] as [any ArgumentDefining]).map(\.definition)

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    var protocolNumber: UInt8 { parsed[Self.proto].number }

    func validate() throws {
        let ported = [IPProtocolNumber.tcp, IPProtocolNumber.udp, IPProtocolNumber.sctp].contains(protocolNumber)
        let echo = IPProtocolNumber.carriesEchoIdentifier(protocolNumber)
        if ported, parsed[Self.port] == nil { throw UsageError("--port is needed for \(ProtocolName.of(protocolNumber))") }
        if echo, parsed[Self.port] != nil || parsed[Self.peerPort] != nil {
            throw UsageError("\(ProtocolName.of(protocolNumber)) has no ports: leave out --port and --peer-port")
        }
        if protocolNumber == IPProtocolNumber.icmp, parsed[Self.peer].family == .ipv6 { throw UsageError("icmp is IPv4's: use --proto icmpv6 for an IPv6 peer") }
        if protocolNumber == IPProtocolNumber.icmpv6, parsed[Self.peer].family == .ipv4 { throw UsageError("icmpv6 is IPv6's: use --proto icmp for an IPv4 peer") }
        if parsed[Self.direction] == .egress, parsed[Self.peerPort] != nil {
            throw UsageError("--peer-port is for ingress; for egress the peer's port is --port")
        }
    }

    func run(_ context: CommandContext) throws {
        if parsed[Self.aws] { return try runAWS(context) }
        let loader = try LoaderAccess.open(context)
        let question = FlowQuestion(pod: parsed[Self.pod], direction: parsed[Self.direction], peer: parsed[Self.peer], protocolNumber: protocolNumber,
                                    port: parsed[Self.port] ?? 0, sourcePort: parsed[Self.direction] == .ingress ? parsed[Self.peerPort] : nil)
        let explanation = try loader.explain(question)
        switch context.outputFormat {
        case .json: context.print(try JSONOutput.encode(explanation))
        case .table: context.print(Self.text(explanation).split(separator: "\n", omittingEmptySubsequences: false).map { TerminalText.escaped(String($0)) }
            .joined(separator: "\n"))
        }
        if let kernel = explanation.kernel, !kernel.agrees {
            throw RuntimeError("netfence bug: the loaded program (\(kernel.program) id \(kernel.programID)) decides "
                + (kernel.decision.map(Self.words) ?? "nothing") + ", the reference decides " + Self.words(explanation.decision),
                hint: "please report it with this output")
        }
    }

    func runAWS(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        let pod = parsed[Self.pod]
        let explanation = try AWSPolicyExplanation.explain(podIdentifier: AWSAgent.podIdentifier(namespace: pod.namespace, name: pod.name),
                                                           direction: parsed[Self.direction], peer: parsed[Self.peer], protocolNumber: protocolNumber,
                                                           port: parsed[Self.port] ?? 0, awsRoot: parsed[AWSRoot.option])
        if context.outputFormat == .json { return context.print(try JSONOutput.encode(explanation)) }
        var lines = ["AWS agent, pod \(explanation.podIdentifier) \(explanation.direction): network policy \(explanation.networkPolicyState), "
                     + "cluster policy \(explanation.clusterPolicyState)",
                     "flow: \(explanation.direction == "ingress" ? "from" : "to") \(explanation.peer)"
                        + (explanation.port == 0 ? "" : " port \(explanation.port)") + "/\(explanation.proto), a new flow"]
        for (title, prefix, slots) in [("cluster-policy", explanation.clusterPolicyPrefix, explanation.clusterPolicySlots),
                                       ("network-policy", explanation.networkPolicyPrefix, explanation.networkPolicySlots)] {
            lines.append("")
            guard let prefix else {
                lines.append("no entry of the pod's \(title) trie holds \(explanation.peer)")
                continue
            }
            lines.append("\(title) entry holding \(explanation.peer): \(prefix)")
            var table = Table(headers: ["SLOT", "PROTO", "PORTS", "TIER", "PRIO", "ACTION", "MATCHES"])
            for slot in slots {
                table.append([String(slot.slot), slot.proto, slot.ports, slot.tier ?? "-", slot.priority.map(String.init) ?? "-", slot.action,
                              slot.matches ? "yes" : "no"])
            }
            lines += table.render().split(separator: "\n").map { "  " + $0 }
        }
        lines += ["", "decision: \(explanation.verdict) by \(explanation.tier)" + (explanation.slot.map { " (slot \($0) of \(explanation.map ?? ""))" } ?? ""),
                  "why: \(explanation.why)"]
        context.print(lines.map(TerminalText.escaped).joined(separator: "\n"))
    }

    static func words(_ verdict: PolicyExplanation.Verdict) -> String {
        let by = verdict.policy.map { "\($0) rule \(verdict.rule ?? 0)" } ?? (verdict.ruleID == 0 ? "no rule" : "rule id \(verdict.ruleID)")
        return "\(verdict.verdict) by \(verdict.tier) (\(by))" + (verdict.reason == Reason.policy.description ? "" : ", \(verdict.reason)")
    }

    static func text(_ e: PolicyExplanation) -> String {
        var lines = ["pod \(e.pod) (pod id \(e.podID), \(e.interface) ifindex \(e.ifindex), revision \(e.revision), live slot \(e.slot))",
                     "\(e.direction): \(e.state)" + (e.isolatedBy.isEmpty ? "" : " by \(e.isolatedBy.joined(separator: ", "))")
                        + (e.auditState.map { "; with audit objects enforced: \($0)" } ?? ""),
                     "flow: \(e.direction == "ingress" ? "from" : "to") \(e.peer)"
                        + (e.port == 0 || e.proto.hasPrefix("icmp") ? "" : " port \(e.port)") + "/\(e.proto), a new flow", ""]
        if let prefix = e.prefix {
            lines.append("longest prefix holding \(e.peer): \(prefix)")
            var table = Table(headers: ["POLICY", "RULE", "TIER", "PRIO", "ACTION", "PROTO", "PORTS", "MATCHES"])
            for rule in e.rules {
                table.append([rule.policy ?? "rule id \(rule.ruleID)", rule.rule.map(String.init) ?? "-", rule.tier, String(rule.priority),
                              rule.action + (rule.audit ? " (audit)" : ""), rule.proto, rule.ports, rule.matches ? "yes" : "no"])
            }
            lines.append(table.render().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        } else {
            lines.append("no prefix of the pod's \(e.direction) trie holds \(e.peer)")
        }
        for grant in e.grants {
            let when = grant.expiresInSeconds >= 0 ? String(format: "expires in %.0f s", grant.expiresInSeconds)
                : String(format: "expired %.0f s ago", -grant.expiresInSeconds)
            lines.append("domain grant for \(grant.pattern): \(when)" + (grant.live ? "" : " (counts for no new flow)"))
        }
        if let proxy = e.dnsProxy { lines.append("DNS: \(e.peer) \(proxy ? "is" : "is not") a DNS proxy") }
        lines += ["", "decision: \(words(e.decision))", "why: \(e.why)"]
        if let audit = e.auditDecision, let why = e.auditWhy { lines.append("audit: \(words(audit)): \(why)") }
        if e.conntrack.isEmpty {
            lines.append("conntrack: no established flow of this peer: the decision above applies")
        } else {
            for flow in e.conntrack {
                lines.append("conntrack: \(flow.source) → \(flow.destination) is tracked (\(flow.state)): "
                    + (flow.state == "current" ? "its packets pass before policy is consulted" : "its next packet is decided again"))
            }
        }
        if let kernel = e.kernel {
            lines.append("kernel: \(kernel.program) (id \(kernel.programID)) decides "
                + (kernel.decision.map(words) ?? "nothing") + (kernel.agrees ? ": the same" : ": NOT the same (a bug)"))
        }
        return lines.joined(separator: "\n")
    }
}

/// `netfence policy show`.
struct PolicyShowCommand: Command {
    static let configuration = CommandConfiguration(
        name: "show",
        abstract: "The rules a pod enforces, by direction and object, with the new flows each decided.",
        discussion: """
            For each direction: the pod's state, each object selecting it (audit objects marked) with its rules and \
            HITS, the new flows each rule allowed and denied (an audit rule: the new flows it would have decided \
            otherwise), and what the pod's isolation and default decided. Counted by the datapath on new flows only. \
            Re-applying an object starts its counts again (a new version is a new object); deleting it drops them.
            """)

    static let pod = Option<PodReference>(long: "pod", help: "The pod, as NAMESPACE/NAME.")
    static let arguments = [pod.definition]

    let pod: PodReference
    init(parsed: ParsedArguments) { pod = parsed[Self.pod] }

    func run(_ context: CommandContext) throws {
        let view = try LoaderAccess.open(context).podRules(pod)
        if context.outputFormat == .json { return context.print(try JSONOutput.encode(view)) }
        var lines = ["pod \(view.pod) (pod id \(view.podID), revision \(view.revision))"]
        for direction in view.directions {
            lines += ["", "\(direction.direction): \(direction.state)" + (direction.auditState.map { "; with audit objects enforced: \($0)" } ?? "")]
            var table = Table(headers: ["OBJECT", "POLICY", "RULE", "PEER", "PORTS", "TIER", "PRIO", "ACTION", "HITS", "LAST"])
            for object in direction.objects {
                let name = object.object + (object.mode == "audit" ? " (audit)" : "")
                if object.rules.isEmpty { table.append([name, object.policy, "-", "(isolates only)", "", "", "", "", "", ""]) }
                for rule in object.rules {
                    table.append([name, object.policy, String(rule.rule), rule.peer, rule.ports, rule.tier, String(rule.priority), rule.action,
                                  Self.hits(rule.hits), Self.last(rule.hits)])
                }
            }
            if direction.state == "policies-applied" || direction.isolation != .init() {
                table.append(["(isolation)", "-", "-", "no rule matched", "", "network-policy", "", "deny", Self.hits(direction.isolation),
                              Self.last(direction.isolation)])
            }
            table.append(["(default)", "-", "-", "nothing isolates", "", "default", "", "", Self.hits(direction.podDefault), Self.last(direction.podDefault)])
            lines += table.render().split(separator: "\n").map(String.init)
        }
        context.print(lines.map(TerminalText.escaped).joined(separator: "\n"))
    }

    static func hits(_ hits: PodRulesView.Hits) -> String { "\(hits.allowed) allowed, \(hits.denied) denied" }
    static func last(_ hits: PodRulesView.Hits) -> String { hits.lastSecondsAgo.map { String(format: "%.0fs ago", $0) } ?? "-" }
}
