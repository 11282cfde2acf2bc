import BPFKit
import Datapath
import DatapathModel
import Glibc
import HostKit
import Testing
import TestSupport

/// Crafted packets through BPF_PROG_TEST_RUN on the real programs and maps;
/// every case is decided by the reference datapath too, and all three (kernel,
/// reference, expectation) must agree.
@Suite(.serialized) struct VerdictTableTests {
    static let pod0 = "198.18.1.10", pod1 = "198.18.1.11", pod2 = "198.18.1.12"
    static let pod0v6 = "2001:db8:1::10"

    @Test func networkPolicyTier() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        let pod = Self.pod0, pod6 = Self.pod0v6
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 1, peer: cidr("198.18.2.0/24"), except: [cidr("198.18.2.128/25")], ports: [PortRange(protocolNumber: TCP, start: 80)]),
            PolicyRule(ruleID: 2, peer: cidr("198.18.2.0/24"), ports: [PortRange(protocolNumber: UDP, start: 5000, end: 5010)]),
            PolicyRule(ruleID: 3, peer: cidr("198.18.3.0/24")),
            PolicyRule(ruleID: 4, peer: cidr("198.18.4.0/24"), ports: [PortRange(protocolNumber: SCTP, start: 9000), PortRange(protocolNumber: TCP)]),
            PolicyRule(ruleID: 5, peer: cidr("2001:db8:2::/48"), except: [cidr("2001:db8:2:ff::/64")], ports: [PortRange(protocolNumber: TCP, start: 443)]),
        ]])
        try bench.send(tcp("198.18.2.5", pod, 1001, 80), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 1), "single port")
        try bench.send(tcp("198.18.2.5", pod, 1002, 81), pod: 0, .ingress, expect: .drop(.networkPolicy), "other port")
        try bench.send(tcp("198.18.2.200", pod, 1003, 80), pod: 0, .ingress, expect: .drop(.networkPolicy), "except hole")
        try bench.send(udp("198.18.2.200", pod, 1004, 5005), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 2), "hole is per rule")
        try bench.send(udp("198.18.2.5", pod, 1005, 5000), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 2), "range start")
        try bench.send(udp("198.18.2.5", pod, 1006, 5010), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 2), "range end")
        try bench.send(udp("198.18.2.5", pod, 1007, 5011), pod: 0, .ingress, expect: .drop(.networkPolicy), "past range")
        try bench.send(udp("198.18.2.5", pod, 1008, 4999), pod: 0, .ingress, expect: .drop(.networkPolicy), "before range")
        try bench.send(tcp("198.18.3.9", pod, 1009, 12345), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 3), "no ports: any")
        try bench.send(ping("198.18.3.9", pod, id: 1010), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 3), "ICMP under any")
        try bench.send(sctp("198.18.4.1", pod, 1011, 9000), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 4), "SCTP port")
        try bench.send(sctp("198.18.4.1", pod, 1012, 9001), pod: 0, .ingress, expect: .drop(.networkPolicy), "SCTP other port")
        try bench.send(tcp("198.18.4.1", pod, 1013, 9001), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 4), "TCP all ports")
        try bench.send(udp("198.18.4.1", pod, 1014, 9000), pod: 0, .ingress, expect: .drop(.networkPolicy), "wrong protocol")
        try bench.send(ping("198.18.4.1", pod, id: 1015), pod: 0, .ingress, expect: .drop(.networkPolicy), "ICMP needs an any rule")
        try bench.send(tcp("198.18.9.9", pod, 1016, 80), pod: 0, .ingress, expect: .drop(.networkPolicy), "no prefix")
        try bench.send(tcp("2001:db8:2::5", pod6, 1017, 443), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 5), "IPv6")
        try bench.send(tcp("2001:db8:2:ff::5", pod6, 1018, 443), pod: 0, .ingress, expect: .drop(.networkPolicy), "IPv6 except")
        try bench.send(tcp("2001:db8:2::5", pod6, 1019, 80), pod: 0, .ingress, expect: .drop(.networkPolicy), "IPv6 other port")
        try bench.send(ping("2001:db8:3::1", pod6, id: 1020), pod: 0, .ingress, expect: .drop(.networkPolicy), "ICMPv6 echo")
        try bench.send(tcp(pod, "198.18.9.9", 1021, 443), pod: 0, .egress, expect: .pass(.podDefault), "egress default allow")
        #expect(bench.cases == 21)
    }

    @Test func clusterTiersPrioritiesAndTies() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 3)
        let any = [PortRange]()
        func admin(_ id: UInt32, _ peer: String, _ priority: UInt16, _ action: RuleAction, _ ports: [PortRange] = []) -> PolicyRule {
            PolicyRule(ruleID: id, peer: cidr(peer), ports: ports, tier: .admin, priority: priority, action: action)
        }
        func baseline(_ id: UInt32, _ peer: String, _ priority: UInt16, _ action: RuleAction, _ ports: [PortRange] = []) -> PolicyRule {
            PolicyRule(ruleID: id, peer: cidr(peer), ports: ports, tier: .baseline, priority: priority, action: action)
        }
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 10, peer: cidr("198.18.2.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)]),
            admin(100, "198.18.2.66/32", 10, .deny, any),
            admin(101, "198.18.2.0/24", 20, .pass, [PortRange(protocolNumber: TCP, start: 80, end: 90)]),
            admin(102, "198.18.5.0/24", 5, .accept, [PortRange(protocolNumber: TCP, start: 22)]),
            admin(103, "198.18.6.0/24", 30, .accept),
            admin(104, "198.18.6.0/24", 30, .deny, [PortRange(protocolNumber: UDP)]),
            admin(105, "198.18.6.0/24", 30, .pass, [PortRange(protocolNumber: TCP)]),
            admin(106, "198.18.7.0/24", 40, .deny, [PortRange(protocolNumber: TCP)]),
            admin(107, "198.18.7.0/25", 35, .accept, [PortRange(protocolNumber: TCP)]),
        ]])
        let pod = Self.pod0
        try bench.send(tcp("198.18.2.5", pod, 2001, 80), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 10), "Admin Pass falls to NetworkPolicy")
        try bench.send(tcp("198.18.2.5", pod, 2002, 85), pod: 0, .ingress, expect: .drop(.networkPolicy), "Admin Pass, NetworkPolicy denies")
        try bench.send(tcp("198.18.2.66", pod, 2003, 80), pod: 0, .ingress, expect: .drop(.admin, rule: 100), "Admin Deny over NetworkPolicy allow")
        try bench.send(tcp("198.18.5.1", pod, 2004, 22), pod: 0, .ingress, expect: .pass(.admin, rule: 102), "Admin Accept over NetworkPolicy deny")
        try bench.send(tcp("198.18.5.1", pod, 2005, 23), pod: 0, .ingress, expect: .drop(.networkPolicy), "Admin rule off port")
        try bench.send(udp("198.18.6.1", pod, 2006, 53), pod: 0, .ingress, expect: .drop(.admin, rule: 104), "tie: Deny beats Accept")
        try bench.send(tcp("198.18.6.1", pod, 2007, 80), pod: 0, .ingress, expect: .pass(.admin, rule: 103), "tie: Accept beats Pass")
        try bench.send(ping("198.18.6.1", pod, id: 2008), pod: 0, .ingress, expect: .pass(.admin, rule: 103), "Accept alone")
        try bench.send(tcp("198.18.7.1", pod, 2009, 80), pod: 0, .ingress, expect: .pass(.admin, rule: 107), "lower priority number wins")
        try bench.send(tcp("198.18.7.200", pod, 2010, 80), pod: 0, .ingress, expect: .drop(.admin, rule: 106), "outside the /25")

        try bench.apply(pod: 1, states: [.ingress: .defaultAllow, .egress: .defaultDeny], rules: [
            .ingress: [baseline(200, "198.18.8.0/24", 10, .deny), baseline(201, "198.18.8.8/32", 5, .accept, [PortRange(protocolNumber: TCP, start: 443)]),
                       baseline(202, "198.18.9.0/24", 1, .pass)],
            .egress: [baseline(203, "198.18.11.0/24", 10, .accept, [PortRange(protocolNumber: UDP, start: 53)])],
        ])
        let other = Self.pod1
        try bench.send(tcp("198.18.8.1", other, 2011, 80), pod: 1, .ingress, expect: .drop(.baseline, rule: 200), "Baseline Deny, unselected pod")
        try bench.send(tcp("198.18.8.8", other, 2012, 443), pod: 1, .ingress, expect: .pass(.baseline, rule: 201), "Baseline priority")
        try bench.send(tcp("198.18.9.1", other, 2013, 80), pod: 1, .ingress, expect: .pass(.podDefault), "Baseline Pass to default allow")
        try bench.send(tcp("198.18.10.1", other, 2014, 80), pod: 1, .ingress, expect: .pass(.podDefault), "no rule: default allow")
        try bench.send(udp(other, "198.18.11.1", 2015, 53), pod: 1, .egress, expect: .pass(.baseline, rule: 203), "Baseline Accept in strict mode")
        try bench.send(udp(other, "198.18.11.1", 2016, 54), pod: 1, .egress, expect: .drop(.podDefault), "strict default deny")
        try bench.send(tcp(other, "198.18.12.1", 2017, 80), pod: 1, .egress, expect: .drop(.podDefault), "strict default deny, no rule")

        try bench.apply(pod: 2, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 300, peer: cidr("198.18.13.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)]),
            baseline(301, "198.18.13.0/24", 1, .deny),
        ]])
        try bench.send(tcp("198.18.13.1", Self.pod2, 2018, 80), pod: 2, .ingress, expect: .pass(.networkPolicy, rule: 300), "NetworkPolicy over Baseline Deny")
        try bench.send(tcp("198.18.13.1", Self.pod2, 2019, 81), pod: 2, .ingress, expect: .drop(.networkPolicy), "selected pod: NetworkPolicy decides")
        #expect(bench.cases == 19)
    }

    @Test func conntrackRepliesSpoofingRelatedErrorsAndRevisions() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 2)
        let pod = Self.pod0, pod6 = Self.pod0v6
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .policiesApplied], rules: [
            .ingress: [],
            .egress: [
                PolicyRule(ruleID: 400, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
                PolicyRule(ruleID: 401, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: UDP, start: 53)]),
                PolicyRule(ruleID: 402, peer: cidr("198.18.21.0/24")),
                PolicyRule(ruleID: 403, peer: cidr("2001:db8:20::/48"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
            ],
        ])
        try bench.apply(pod: 1, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: []])
        try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 400), "new flow")
        try bench.send(tcp("198.18.20.1", pod, 443, 40001), pod: 0, .ingress, expect: .tracked, "reply")
        try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .tracked, "established")
        try bench.send(tcp("198.18.20.1", pod, 443, 40002), pod: 0, .ingress, expect: .drop(.networkPolicy), "not a reply")
        try bench.send(tcp("198.18.20.1", pod, 443, 40001), pod: 1, .ingress, expect: .drop(.networkPolicy), "spoofed reply on another pod")
        try bench.send(udp(pod, "198.18.20.1", 5353, 53), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 401), "UDP flow")
        try bench.send(udp("198.18.20.1", pod, 53, 5353), pod: 0, .ingress, expect: .tracked, "UDP reply")
        let quotedUDP = PacketBuilder.ipv4(from: ip(pod), to: ip("198.18.20.1"), .udp(sourcePort: 5353, destinationPort: 53))
        try bench.send(PacketBuilder.frame(from: ip("198.18.20.1"), to: ip(pod), .icmpError(type: 3, code: 3, quoted: quotedUDP)),
                       pod: 0, .ingress, expect: .pass(.none, reason: .related), "port unreachable of a tracked flow")
        let quotedTCP = PacketBuilder.ipv4(from: ip(pod), to: ip("198.18.20.1"), .tcp(sourcePort: 40001, destinationPort: 443))
        try bench.send(PacketBuilder.frame(from: ip("198.18.20.254"), to: ip(pod), .icmpError(type: 3, code: 4, quoted: quotedTCP)),
                       pod: 0, .ingress, expect: .pass(.none, reason: .related), "PMTU: fragmentation needed")
        let untracked = PacketBuilder.ipv4(from: ip(pod), to: ip("198.18.20.9"), .udp(sourcePort: 6000, destinationPort: 53))
        try bench.send(PacketBuilder.frame(from: ip("198.18.20.9"), to: ip(pod), .icmpError(type: 3, code: 3, quoted: untracked)),
                       pod: 0, .ingress, expect: .drop(.networkPolicy), "error of an unknown flow")
        try bench.send(ping(pod, "198.18.21.1", id: 9), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 402), "echo request")
        try bench.send(ping("198.18.21.1", pod, id: 9, request: false), pod: 0, .ingress, expect: .tracked, "echo reply")
        try bench.send(ping("198.18.21.1", pod, id: 10, request: false), pod: 0, .ingress, expect: .drop(.networkPolicy), "reply of another echo")
        try bench.send(tcp(pod6, "2001:db8:20::1", 40003, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 403), "IPv6 flow")
        try bench.send(tcp("2001:db8:20::1", pod6, 443, 40003), pod: 0, .ingress, expect: .tracked, "IPv6 reply")
        let quoted6 = PacketBuilder.ipv6(from: ip(pod6), to: ip("2001:db8:20::1"), .tcp(sourcePort: 40003, destinationPort: 443))
        try bench.send(PacketBuilder.frame(from: ip("2001:db8:20::fe"), to: ip(pod6), .icmpError(type: 2, code: 0, quoted: quoted6)),
                       pod: 0, .ingress, expect: .pass(.none, reason: .related), "ICMPv6 packet too big")

        // A new revision: TCP 443 over IPv4 is gone, DNS and IPv6 stay under new rule ids.
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .policiesApplied], rules: [
            .ingress: [],
            .egress: [
                PolicyRule(ruleID: 410, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: UDP, start: 53)]),
                PolicyRule(ruleID: 411, peer: cidr("2001:db8:20::/48"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
            ],
        ])
        try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .drop(.networkPolicy), "revision cuts the flow")
        try bench.send(tcp("198.18.20.1", pod, 443, 40001), pod: 0, .ingress, expect: .drop(.networkPolicy), "and its replies")
        try bench.send(udp(pod, "198.18.20.1", 5353, 53), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 410, reason: .reevaluated), "still allowed")
        try bench.send(udp(pod, "198.18.20.1", 5353, 53), pod: 0, .egress, expect: .tracked, "refreshed to the new revision")
        try bench.send(tcp("2001:db8:20::1", pod6, 443, 40003), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 411, reason: .reevaluated),
                       "a reply re-evaluates its flow's first direction")
        #expect(bench.cases == 21)
    }

    /// Each CPU copies the flows it passes (flow_cache): a new revision ends a copy at once,
    /// and a flushed flow's next packet a tick later is judged anew, not passed from the copy.
    @Test func aCPUsCopyOfAFlowEndsWithItsRevisionAndOutlivesAFlushByOneTickAtMost() throws {
        guard Privileges.require() else { return }
        try OneCPU.pinning {  // every packet on one CPU: the copy one packet makes is the one the next finds
            let bench = try VerdictBench(pods: 1)
            let pod = Self.pod0, allow443: [Direction: [PolicyRule]] = [
                .ingress: [], .egress: [PolicyRule(ruleID: 420, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: TCP, start: 443)])],
            ]
            let isolated: [Direction: PodState] = [.ingress: .policiesApplied, .egress: .policiesApplied]
            try bench.apply(pod: 0, states: isolated, rules: allow443)
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 420), "new flow")
            for _ in 0..<3 {
                try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .tracked, "established: copied, then from the copy")
                try bench.send(tcp("198.18.20.1", pod, 443, 40001), pod: 0, .ingress, expect: .tracked, "its replies too")
            }
            #expect(try bench.flushConntrack(pod: 0) == 1)
            usleep(25_000)  // past the tick the copy was made in (a jiffy is 1-10 ms)
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 420),
                           "a tick after the flush: judged anew")
            #expect(try bench.datapath.conntrack.countEntries() == 1, "and tracked again")
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .tracked, "copied again")
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .tracked, "from the copy")
            try bench.apply(pod: 0, states: isolated, rules: [.ingress: [], .egress: []])
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .drop(.networkPolicy), "a new revision ends the copy")
            try bench.send(tcp("198.18.20.1", pod, 443, 40001), pod: 0, .ingress, expect: .drop(.networkPolicy), "for its replies too")
            #expect(bench.cases == 12)
        }
    }

    /// The established path reads the common packet straight from the frame, ahead of the parser,
    /// and finds the flows the full path copied. A pod that sends IPv6 carrying an IPv4 flow's
    /// addresses (`::ffff:a.b.c.d`, the same ports) within the copy's tick gets no share of that
    /// flow; an IPv6 flow and its replies pass as tracked through the same search.
    @Test func aCopyIsFoundOnlyByItsOwnFamily() throws {
        guard Privileges.require() else { return }
        try OneCPU.pinning {
            let bench = try VerdictBench(pods: 1)
            let pod = Self.pod0, pod6 = Self.pod0v6
            try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .policiesApplied], rules: [
                .ingress: [],
                .egress: [
                    PolicyRule(ruleID: 430, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
                    PolicyRule(ruleID: 431, peer: cidr("2001:db8:20::/48"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
                ],
            ])
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 430), "new flow")
            try bench.send(tcp(pod, "198.18.20.1", 40001, 443), pod: 0, .egress, expect: .tracked, "copied, then from the copy")
            let lying = PacketBuilder.frame(from: ip(pod), to: ip("198.18.20.1"), .tcp(sourcePort: 40001, destinationPort: 443), family: .ipv6)
            try bench.send(lying, pod: 0, .egress, expect: .drop(.networkPolicy), "its words as IPv6: another flow, and no IPv6 rule allows it")
            try bench.send(tcp(pod6, "2001:db8:20::1", 40002, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 431), "an IPv6 flow")
            for _ in 0..<2 {
                try bench.send(tcp(pod6, "2001:db8:20::1", 40002, 443), pod: 0, .egress, expect: .tracked, "copied, then from the copy")
                try bench.send(tcp("2001:db8:20::1", pod6, 443, 40002), pod: 0, .ingress, expect: .tracked, "its replies too")
            }
            #expect(bench.cases == 8)
        }
    }

    /// What copies must never weaken: a flow's next packet after a change of policy is judged
    /// under the new policy, also within the tick its copy was made in. The coarse clock moves
    /// with jiffies: unchanged from before the copy to after the packet, both fell in one tick.
    @Test func aChangeOfPolicyEndsACopyWithinItsTick() throws {
        guard Privileges.require() else { return }
        try OneCPU.pinning {
            let bench = try VerdictBench(pods: 1)
            let datapath = bench.datapath, ifindex = bench.ifindex(0), namespace = bench.interfaces.namespace
            let isolated: [Direction: PodState] = [.ingress: .policiesApplied, .egress: .policiesApplied]
            let allow = try PolicyCompiler.compile([
                PolicyRule(ruleID: 420, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: TCP, start: 443)]),
            ])
            let denyAll = try PolicyCompiler.compile([]), flow = tcp(Self.pod0, "198.18.20.1", 40001, 443)
            func verdict() throws -> UInt32 { try datapath.run(flow, direction: .egress, ifindex: ifindex, in: namespace).verdict }
            var withinOneTick = 0
            // One set of shared tries: after the first round a change only flips the pod's record
            // and revision (microseconds), where a new trie waits for a grace period (milliseconds).
            try datapath.withSharedTries { tries in
                for _ in 0..<20 {
                    try datapath.apply(ifindex: ifindex, podID: 0, states: isolated, policies: [.egress: allow], tries: tries)
                    #expect(try verdict() == 0, "allowed: a new flow")
                    let tick = HostClock.monotonicCoarse.nanoseconds
                    #expect(try verdict() == 0, "established: copied")
                    try datapath.apply(ifindex: ifindex, podID: 0, states: isolated, policies: [.egress: denyAll], tries: tries)
                    let cut = try verdict()
                    if HostClock.monotonicCoarse.nanoseconds == tick { withinOneTick += 1 }
                    #expect(cut == 2, "the next packet after the change is dropped")
                }
            }
            #expect(withinOneTick > 0, "no change fell within its copy's tick: the copy's revision check went untested")
        }
    }

    /// A removed pod's flows stay until a sweep: a successor on its interface (another pod id)
    /// never takes them for its own, neither on the fast path, nor re-evaluated, nor as a
    /// flow an ICMP error relates to; its own flow of the same tuple replaces the entry.
    @Test func aSuccessorOnTheSameInterfaceNeverUsesItsPredecessorsFlows() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        let pod = Self.pod0
        let isolated: [Direction: PodState] = [.ingress: .policiesApplied, .egress: .defaultAllow]
        try bench.apply(pod: 0, states: isolated, rules: [.ingress: []])
        try bench.send(udp(pod, "198.18.20.1", 5353, 53), pod: 0, .egress, expect: .pass(.podDefault), "the predecessor's flow")
        try bench.send(udp("198.18.20.1", pod, 53, 5353), pod: 0, .ingress, expect: .tracked, "its reply")

        try bench.remove(pod: 0)
        #expect(try bench.datapath.conntrack.countEntries() == 1, "the entry waits for a sweep")
        try bench.apply(pod: 0, podID: 9, states: isolated, rules: [.ingress: []])
        try bench.send(udp("198.18.20.1", pod, 53, 5353), pod: 0, .ingress, expect: .drop(.networkPolicy),
                       "not the successor's reply (its egress would allow the flow's first packet)")
        let quoted = PacketBuilder.ipv4(from: ip(pod), to: ip("198.18.20.1"), .udp(sourcePort: 5353, destinationPort: 53))
        try bench.send(PacketBuilder.frame(from: ip("198.18.20.1"), to: ip(pod), .icmpError(type: 3, code: 3, quoted: quoted)),
                       pod: 0, .ingress, expect: .drop(.networkPolicy), "nor an error of the successor's flow")
        try bench.send(udp(pod, "198.18.20.1", 5353, 53), pod: 0, .egress, expect: .pass(.podDefault), "the successor's own flow")
        try bench.send(udp("198.18.20.1", pod, 53, 5353), pod: 0, .ingress, expect: .tracked, "and its reply")
        let predecessor = try bench.datapath.sweep { $0 == 0 }
        #expect(predecessor.flows == 0 && predecessor.ruleHits == 1, "the successor's flow replaced the entry; the hits go: \(predecessor)")
        #expect(try bench.datapath.ruleHits().allSatisfy { $0.podID == 9 })

        try bench.remove(pod: 0)
        try bench.apply(pod: 0, podID: 10, states: isolated, rules: [.ingress: []])
        let successor = try bench.datapath.sweep { $0 == 9 }
        #expect(successor.flows == 1 && successor.grants == 0, "\(successor)")
        #expect(try bench.datapath.conntrack.countEntries() == 0 && bench.datapath.ruleHits().isEmpty)
        #expect(bench.cases == 6)
    }

    @Test func parsingFragmentsOptionsExtensionsAndMalformedHeaders() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 3)
        let pod = Self.pod0, pod6 = Self.pod0v6
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 500, peer: cidr("198.18.30.0/24"), ports: [PortRange(protocolNumber: UDP, start: 9999)]),
            PolicyRule(ruleID: 501, peer: cidr("2001:db8:30::/48"), ports: [PortRange(protocolNumber: UDP, start: 9999)]),
        ]])
        try bench.apply(pod: 1, states: [.ingress: .defaultAllow, .egress: .defaultAllow])
        let peer = ip("198.18.30.1"), peer6 = ip("2001:db8:30::1"), me = ip(pod), me6 = ip(pod6)
        func udp4(_ sport: UInt16, _ dport: UInt16, options: [UInt8] = [], fragment: PacketBuilder.Fragment? = nil) -> [UInt8] {
            PacketBuilder.frame(from: peer, to: me, .udp(sourcePort: sport, destinationPort: dport), ipv4Options: options, fragment: fragment)
        }
        func later4(_ id: UInt16, from: IPAddress? = nil, to: IPAddress? = nil) -> [UInt8] {
            PacketBuilder.frame(from: from ?? peer, to: to ?? me, .raw(protocolNumber: UDP, bytes: [UInt8](repeating: 1, count: 16)),
                                fragment: .init(identification: id, offset: 2, more: false))
        }
        let routerAlert: [UInt8] = [0x94, 4, 0, 0]
        try bench.send(udp4(3001, 9999, options: routerAlert), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 500), "IPv4 option")
        try bench.send(udp4(3002, 9999, options: [UInt8](repeating: 1, count: 40)), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 500), "40 bytes of options")
        try bench.send(udp4(3003, 9998, options: routerAlert), pod: 0, .ingress, expect: .drop(.networkPolicy), "options, wrong port")
        try bench.send(udp4(3004, 9999, fragment: .init(identification: 77, offset: 0, more: true)), pod: 0, .ingress,
                       expect: .pass(.networkPolicy, rule: 500), "first fragment")
        try bench.send(later4(77), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 500, reason: .fragment), "later fragment follows")
        try bench.send(udp4(3005, 8888, fragment: .init(identification: 78, offset: 0, more: true)), pod: 0, .ingress,
                       expect: .drop(.networkPolicy), "denied first fragment")
        try bench.send(later4(78), pod: 0, .ingress, expect: .drop(.networkPolicy, reason: .fragment), "its later fragment")
        try bench.send(later4(79), pod: 0, .ingress, expect: .drop(.none, reason: .noFirstFragment), "later fragment alone")
        try bench.send(later4(80, to: ip(Self.pod1)), pod: 1, .ingress, expect: .untouched, "unenforced pod: not judged")
        try bench.send(udp4(3004, 9999, fragment: .init(identification: 81, offset: 0, more: true)), pod: 0, .ingress,
                       expect: .tracked, "first fragment of a tracked flow")
        try bench.send(later4(81), pod: 0, .ingress, expect: .pass(.none, reason: .fragment), "its later fragment")

        let ethernet4 = PacketBuilder.ethernet(etherType: 0x0800)
        let fullUDP = udp4(3006, 9999)
        try bench.send(Array(tcp("198.18.30.1", pod, 3015, 80).prefix(14 + 20 + 3)), pod: 0, .ingress,
                       expect: .drop(.none, reason: .unparseable), "TCP header cut")
        try bench.send(Array(fullUDP.prefix(14 + 20 + 2)), pod: 0, .ingress, expect: .drop(.none, reason: .unparseable), "UDP header cut")
        var shortIHL = fullUDP
        shortIHL[14] = 0x44
        try bench.send(shortIHL, pod: 0, .ingress, expect: .drop(.none, reason: .unparseable), "IHL below 5")
        var longIHL = fullUDP
        longIHL[14] = 0x4f
        try bench.send(longIHL, pod: 0, .ingress, expect: .drop(.none, reason: .unparseable), "IHL past the packet")
        try bench.send(ethernet4 + [0x60] + [UInt8](repeating: 0, count: 39), pod: 0, .ingress, expect: .drop(.none, reason: .unparseable), "IPv4 type, version 6")
        try bench.send(Array(fullUDP.prefix(14 + 20 + 2)), pod: 1, .ingress, expect: .untouched, "unenforced pod: cut header not judged")

        func udp6(_ sport: UInt16, _ dport: UInt16, _ extensions: [PacketBuilder.Extension]) -> [UInt8] {
            PacketBuilder.frame(from: peer6, to: me6, .udp(sourcePort: sport, destinationPort: dport), extensions: extensions)
        }
        try bench.send(udp6(3007, 9999, [.hopByHop, .destinationOptions]), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 501), "IPv6 extension headers")
        try bench.send(udp6(3008, 9998, [.hopByHop]), pod: 0, .ingress, expect: .drop(.networkPolicy), "extension header, wrong port")
        try bench.send(udp6(3009, 9999, [PacketBuilder.Extension(type: 51, body: [UInt8](repeating: 0, count: 14))]), pod: 0, .ingress,
                       expect: .pass(.networkPolicy, rule: 501), "authentication header")
        try bench.send(udp6(3010, 9999, [.fragment(offset: 0, more: true, identification: 0xabcdef)]), pod: 0, .ingress,
                       expect: .pass(.networkPolicy, rule: 501), "IPv6 first fragment")
        try bench.send(PacketBuilder.frame(from: peer6, to: me6, .raw(protocolNumber: UDP, bytes: [UInt8](repeating: 2, count: 16)),
                                           extensions: [.fragment(offset: 2, more: false, identification: 0xabcdef)]),
                       pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 501, reason: .fragment), "IPv6 later fragment")
        try bench.send(udp6(3011, 9999, Array(repeating: .destinationOptions, count: 9)), pod: 0, .ingress,
                       expect: .drop(.none, reason: .unparseable), "more extension headers than walked")
        try bench.send(Array(udp6(3012, 9999, [.hopByHop]).prefix(14 + 40 + 1)), pod: 0, .ingress,
                       expect: .drop(.none, reason: .unparseable), "IPv6 extension header cut")
        try bench.send(PacketBuilder.frame(from: peer6, to: me6, .neighbourSolicitation), pod: 0, .ingress, expect: .untouched, "neighbour discovery")
        try bench.send(PacketBuilder.frame(from: ip("fe80::1"), to: ip("ff02::16"), .multicastListenerReport), pod: 0, .ingress,
                       expect: .untouched, "multicast listener discovery")
        try bench.send(ping("2001:db8:30::1", pod6, id: 3013), pod: 0, .ingress, expect: .drop(.networkPolicy), "ICMPv6 echo is a flow")
        try bench.send(PacketBuilder.ethernet(etherType: 0x0806) + [UInt8](repeating: 0, count: 28), pod: 0, .ingress, expect: .untouched, "ARP")
        try bench.send(udp4(3014, 9999), pod: 2, .ingress, expect: .untouched, "no pod on the interface")
        #expect(bench.cases == 29)
    }

    /// A prefix of one family never matches a packet of the other, in either tier
    /// or direction; an IPv6 packet with a mapped address is IPv6.
    /// Audit rules never change a verdict: the enforced decision stands, and an audit event says
    /// what the audit objects would have decided where that differs (would-deny, would-allow).
    @Test func auditRulesSayWhatTheyWouldDecideAndDecideNothing() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        let pod = Self.pod0
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [
            .ingress: [
                PolicyRule(ruleID: 1, peer: cidr("198.18.2.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)]),
                PolicyRule(ruleID: 30, peer: cidr("198.18.2.66/32"), tier: .admin, priority: 5, action: .deny, audit: true),
                PolicyRule(ruleID: 50, peer: cidr("198.18.5.0/24"), audit: true),
            ],
            .egress: [PolicyRule(ruleID: 20, peer: cidr("198.18.9.0/24"), audit: true)],
        ], auditStates: [.ingress: .policiesApplied, .egress: .policiesApplied])
        try bench.send(tcp("198.18.2.5", pod, 2001, 80), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 1), "both views allow: no audit event")
        try bench.send(tcp("198.18.2.66", pod, 2002, 80), pod: 0, .ingress,
                       expect: .pass(.networkPolicy, rule: 1, audit: Decision(verdict: .deny, tier: .admin, ruleID: 30)), "an audit Admin deny would deny")
        try bench.send(tcp("198.18.5.5", pod, 2003, 22), pod: 0, .ingress,
                       expect: .drop(.networkPolicy, audit: Decision(verdict: .allow, tier: .networkPolicy, ruleID: 50)), "an audit rule would allow")
        try bench.send(tcp("198.18.3.3", pod, 2004, 80), pod: 0, .ingress, expect: .drop(.networkPolicy), "both views deny")
        try bench.send(tcp(pod, "198.18.9.9", 2005, 443), pod: 0, .egress, expect: .pass(.podDefault), "audit isolation allows the audit rule's peer")
        try bench.send(tcp(pod, "198.18.7.7", 2006, 443), pod: 0, .egress,
                       expect: .pass(.podDefault, audit: Decision(verdict: .deny, tier: .networkPolicy, ruleID: 0)), "audit isolation would deny the rest")
        try bench.send(tcp(pod, "198.18.7.7", 2006, 443), pod: 0, .egress, expect: .tracked, "an allowed flow is tracked as ever")
        let cut = Array(tcp(pod, "198.18.7.8", 2007, 443).prefix(14 + 20 + 3))
        try bench.send(cut, pod: 0, .egress, expect: .untouched, "a trie of audit rules alone enforces nothing: an unreadable packet passes")
        #expect(bench.cases == 8)
    }

    @Test func addressFamiliesNeverCross() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 3)
        let pod = Self.pod0, pod6 = Self.pod0v6
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [
            .egress: [PolicyRule(ruleID: 500, peer: cidr("::/0"), tier: .admin, priority: 1, action: .deny)],
            .ingress: [PolicyRule(ruleID: 501, peer: cidr("::/1")), PolicyRule(ruleID: 502, peer: cidr("198.18.30.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)])],
        ])
        try bench.send(tcp(pod, "198.18.31.1", 5001, 80), pod: 0, .egress, expect: .pass(.podDefault), "Admin Deny ::/0 lets IPv4 out")
        try bench.send(tcp(pod6, "2001:db8:31::1", 5002, 80), pod: 0, .egress, expect: .drop(.admin, rule: 500), "and denies IPv6")
        try bench.send(tcp("198.18.32.1", pod, 5003, 80), pod: 0, .ingress, expect: .drop(.networkPolicy), "allow ::/1 lets no IPv4 in")
        try bench.send(tcp("::1", pod6, 5004, 80), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 501), "but IPv6 in ::/1")
        let mapped = PacketBuilder.frame(from: ip("198.18.30.1"), to: ip(pod6), .tcp(sourcePort: 5005, destinationPort: 80), family: .ipv6)
        try bench.send(mapped, pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 501),
                       "an IPv6 packet from a mapped address is IPv6")
        try bench.send(tcp("198.18.30.1", pod, 5006, 80), pod: 0, .ingress, expect: .pass(.networkPolicy, rule: 502), "the IPv4 rule")

        try bench.apply(pod: 1, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 510, peer: cidr("0.0.0.0/0"), except: [cidr("198.18.33.0/24")]),
            PolicyRule(ruleID: 511, peer: cidr("::ffff:0:0/96")),
        ]])
        try bench.send(tcp("198.18.34.1", Self.pod1, 5007, 80), pod: 1, .ingress, expect: .pass(.networkPolicy, rule: 510), "IPv4 any")
        try bench.send(tcp("198.18.33.1", Self.pod1, 5008, 80), pod: 1, .ingress, expect: .drop(.networkPolicy),
                       "an IPv6 prefix over the mapped range fills no IPv4 hole")
        try bench.send(tcp("2001:db8:34::1", pod6, 5009, 80), pod: 1, .ingress, expect: .drop(.networkPolicy), "IPv4 any lets no IPv6 in")

        try bench.apply(pod: 2, states: [.ingress: .defaultAllow, .egress: .defaultDeny], rules: [.egress: [
            PolicyRule(ruleID: 520, peer: cidr("::/0"), tier: .baseline, priority: 1, action: .accept),
        ]])
        try bench.send(udp(Self.pod2, "198.18.35.1", 5010, 53), pod: 2, .egress, expect: .drop(.podDefault), "Baseline Accept ::/0 is not IPv4")
        try bench.send(udp(pod6, "2001:db8:35::1", 5011, 53), pod: 2, .egress, expect: .pass(.baseline, rule: 520), "but is IPv6")
        #expect(bench.cases == 11)
    }
}
