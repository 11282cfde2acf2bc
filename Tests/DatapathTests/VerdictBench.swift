import BPFKit
import Datapath
import DatapathModel
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

/// What a test expects of one packet.
enum Expect: CustomStringConvertible {
    /// Decided and passed: by this tier and rule (an event says so); with `audit`, audit objects
    /// would have decided otherwise (an audit event says so).
    case pass(Tier, rule: UInt32 = 0, reason: Reason = .policy, audit: Decision? = nil)
    /// Decided and dropped.
    case drop(Tier, rule: UInt32 = 0, reason: Reason = .policy, audit: Decision? = nil)
    /// Passed on the conntrack fast path: no decision, no event.
    case tracked
    /// Not judged at all (non-IP, neighbour discovery, unknown interface, unenforced).
    case untouched

    var description: String {
        switch self {
        case .pass(let tier, let rule, let reason, let audit): "pass by \(tier) rule \(rule) (\(reason))" + (audit.map { "; audit \($0)" } ?? "")
        case .drop(let tier, let rule, let reason, let audit): "drop by \(tier) rule \(rule) (\(reason))" + (audit.map { "; audit \($0)" } ?? "")
        case .tracked: "pass on the fast path"
        case .untouched: "pass untouched"
        }
    }

    var outcome: ReferenceDatapath.Outcome {
        switch self {
        case .pass(let tier, let rule, let reason, let audit):
            .init(passed: true, decision: Decision(verdict: .allow, tier: tier, ruleID: rule), reason: reason, audit: audit)
        case .drop(let tier, let rule, let reason, let audit):
            .init(passed: false, decision: Decision(verdict: .deny, tier: tier, ruleID: rule), reason: reason, audit: audit)
        case .tracked, .untouched:
            .init(passed: true, decision: nil, reason: nil)
        }
    }
}

/// The real datapath and the reference side by side, with pods on veth
/// interfaces in a throwaway namespace. Every packet goes to both.
final class VerdictBench {
    let datapath: Datapath
    let interfaces: SandboxInterfaces
    let events: EventRingReader
    var reference = ReferenceDatapath()
    private(set) var cases = 0
    /// Pod ids other than the pod's number, given by `apply`.
    private var podIDs: [Int: UInt32] = [:]

    /// Pods `pod0` … `pod{count-1}`, pod ids 0 …, nothing applied yet.
    init(pods count: Int) throws {
        datapath = try Datapath()
        interfaces = try SandboxInterfaces(name: UniqueNames.make("nfv"), interfaces: (0..<count).map { "pod\($0)" })
        events = try datapath.eventReader()
        try datapath.setEventLevel(.all)
    }

    func ifindex(_ pod: Int) -> UInt32 { interfaces.ifindexes["pod\(pod)"]! }

    /// Compiles `rules` per direction and applies them, with egress `domainRules`
    /// by pattern id, to the kernel and the reference.
    /// `podID`: another id than the pod's number (a successor on the same interface).
    func apply(pod: Int, podID: UInt32? = nil, states: [Direction: PodState], rules: [Direction: [PolicyRule]] = [:],
               domainRules: [UInt64: [PortRule]] = [:], auditStates: [Direction: PodState]? = nil) throws {
        var compiled: [Direction: CompiledPolicy] = [:]
        for (direction, list) in rules { compiled[direction] = try PolicyCompiler.compile(list) }
        podIDs[pod] = podID
        try datapath.apply(ifindex: ifindex(pod), podID: podID ?? UInt32(pod), states: states, policies: compiled, domainRules: domainRules,
                           auditStates: auditStates)
        let record = try #require(try datapath.pod(ifindex: ifindex(pod)))
        reference.pods[ifindex(pod)] = ReferenceDatapath.Pod(record: record, policies: compiled, domainRules: domainRules)
    }

    /// Removes pod `pod`'s record from the kernel and the reference (its flows stay until a sweep).
    func remove(pod: Int) throws {
        try datapath.remove(ifindex: ifindex(pod))
        reference.pods[ifindex(pod)] = nil
    }

    /// Flushes pod `pod`'s interface's flows in the kernel and the reference; returns how many the kernel had.
    func flushConntrack(pod: Int) throws -> Int {
        reference.flushConntrack(ifindex: ifindex(pod))
        return try datapath.flushConntrack(ifindex: ifindex(pod))
    }

    /// What the DNS proxy does: grants `address` to pod `pod` under `patterns` (id, expiry).
    func grant(pod: Int, _ address: String, _ patterns: [(UInt64, expires: UInt64)]) throws {
        let grant = DomainGrant(podID: UInt32(pod), address: ip(address),
                                patterns: patterns.map { DomainGrant.Pattern(pattern: $0.0, expiresNanoseconds: $0.expires) })
        try datapath.write(grant)
        reference.write(grant)
    }

    /// Registers a DNS proxy on `address` in the kernel and the reference.
    func addDNSProxy(_ address: String) throws {
        try datapath.registerDNSProxy(address: ip(address), DNSProxyRecord(pid: 1, port: 53, startedNanoseconds: 0))
        reference.dnsProxies.insert(ip(address))
    }

    /// A DNS proxy's heartbeat at CLOCK_MONOTONIC `nanoseconds`, in the kernel and the reference.
    func beatDNSHeartbeat(_ nanoseconds: UInt64) throws {
        try datapath.beatDNSHeartbeat(monotonicNanoseconds: nanoseconds)
        reference.dnsHeartbeat = nanoseconds
    }

    /// Sends `frame` through pod `pod`'s program for `direction`; kernel, reference
    /// and `expected` must agree on pass/drop, and on the decision the event carries.
    /// A packet the tiers decide (a new flow) is explained first: the program, marked,
    /// must judge it as the reference does and change nothing (no event, no conntrack entry).
    func send(_ frame: [UInt8], pod: Int, _ direction: Direction, expect expected: Expect, _ note: String = "",
              sourceLocation: SourceLocation = #_sourceLocation) throws {
        cases += 1
        let label = note.isEmpty ? "" : "\(note): "
        if case let .packet(packet) = PacketParser.parse(frame), !packet.laterFragment, expected.outcome.reason == .policy
            || [.dnsProxy, .dnsBypass, .domainExpired, .dnsProxyDown].contains(expected.outcome.reason) {
            reference.now = HostClock.monotonic.nanoseconds
            let conntrackBefore = try datapath.conntrack.countEntries()
            let explained = try datapath.explain(frame, direction: direction, ifindex: ifindex(pod), in: interfaces.namespace)
            let model = reference.decideNewFlow(ifindex: ifindex(pod), direction: direction, family: packet.family,
                                                peer: packet.flow.peer(direction), protocolNumber: packet.flow.protocolNumber,
                                                port: packet.flow.destinationPort)
            #expect(explained != nil && explained?.decision == model?.decision && explained?.reason == model?.reason && explained?.audit == model?.audit,
                    "\(label)explained by the kernel \(String(describing: explained)), by the reference \(String(describing: model))",
                    sourceLocation: sourceLocation)
            #expect(try events.drain().isEmpty && datapath.conntrack.countEntries() == conntrackBefore,
                    "\(label)explaining changed nothing", sourceLocation: sourceLocation)
        }
        let kernel: BPFProgram.TestRunResult
        do {
            kernel = try datapath.run(frame, direction: direction, ifindex: ifindex(pod), in: interfaces.namespace)
        } catch {
            Issue.record("\(note): the kernel refused the test run: \(error)", sourceLocation: sourceLocation)
            return
        }
        let all = try events.drain().compactMap(VerdictEvent.decode)
        let decided = all.filter { $0.verdict != .audit }, audited = all.filter { $0.verdict == .audit }
        reference.now = HostClock.monotonic.nanoseconds
        let model = reference.process(frame, ifindex: ifindex(pod), direction: direction)
        let kernelPassed = kernel.verdict == 0  // TC_ACT_OK; TC_ACT_SHOT is 2
        let kernelOutcome = ReferenceDatapath.Outcome(
            passed: kernelPassed,
            decision: decided.first.map { Decision(verdict: $0.verdict, tier: $0.tier, ruleID: $0.ruleID) },
            reason: decided.first?.reason,
            audit: audited.first.map { Decision(verdict: $0.reason == .auditWouldAllow ? .allow : .deny, tier: $0.tier, ruleID: $0.ruleID) })
        #expect(decided.count <= 1 && audited.count <= 1, "\(label)one packet, at most one event and one audit event", sourceLocation: sourceLocation)
        #expect(kernel.verdict == 0 || kernel.verdict == 2, "\(label)TC action \(kernel.verdict)", sourceLocation: sourceLocation)
        #expect(kernelOutcome == model, "\(label)kernel \(kernelOutcome) vs reference \(model)", sourceLocation: sourceLocation)
        #expect(kernelOutcome == expected.outcome, "\(label)kernel \(kernelOutcome), expected \(expected)", sourceLocation: sourceLocation)
        if let event = decided.first {
            #expect(event.ifindex == ifindex(pod) && event.podID == podIDs[pod] ?? UInt32(pod) && event.direction == direction,
                    "\(label)event names the pod and direction", sourceLocation: sourceLocation)
        }
    }
}

/// Shorthands for readable cases.
func ip(_ text: String) -> IPAddress { IPAddress(text)! }
func cidr(_ text: String) -> IPPrefix { IPPrefix.parse(text)!.prefix }
func tcp(_ from: String, _ to: String, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
    PacketBuilder.frame(from: ip(from), to: ip(to), .tcp(sourcePort: sport, destinationPort: dport))
}
func udp(_ from: String, _ to: String, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
    PacketBuilder.frame(from: ip(from), to: ip(to), .udp(sourcePort: sport, destinationPort: dport))
}
func sctp(_ from: String, _ to: String, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
    PacketBuilder.frame(from: ip(from), to: ip(to), .sctp(sourcePort: sport, destinationPort: dport))
}
func ping(_ from: String, _ to: String, id: UInt16 = 7, request: Bool = true) -> [UInt8] {
    PacketBuilder.frame(from: ip(from), to: ip(to), .echo(request: request, identifier: id))
}
let TCP = IPProtocolNumber.tcp, UDP = IPProtocolNumber.udp, SCTP = IPProtocolNumber.sctp
