import BPFKit
import DatapathModel
import Glibc
import HostKit
import Testing
import TestSupport

/// Egress by domain name in the kernel: grants the DNS proxy writes, the
/// domain rules of the pod's live slot, expiry, and DNS only to the proxy.
/// Every case is decided by the reference datapath too.
@Suite(.serialized) struct DomainGrantTests {
    static let pod0 = "198.18.1.10", pod1 = "198.18.1.11", pod2 = "198.18.1.12", pod0v6 = "2001:db8:1::10"
    /// Pattern ids as `DomainPattern.id` makes them (any 64-bit values serve here).
    static let github: UInt64 = 0x1111, wildcard: UInt64 = 0x2222, gone: UInt64 = 0x3333

    static var hourFromNow: UInt64 { HostClock.monotonic.nanoseconds + 3_600_000_000_000 }
    static let longAgo: UInt64 = 1

    /// Pods 0 and 1 have the same domain rules (443 for one pattern, 22 for the
    /// other) beside a CIDR rule; pod 2 has no domain rules.
    func makeBench() throws -> VerdictBench {
        let bench = try VerdictBench(pods: 3)
        let egress = [PolicyRule(ruleID: 1, peer: cidr("198.19.9.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)])]
        let domains: [UInt64: [PortRule]] = [
            Self.github: [PortRule(ruleID: 10, protocolNumber: TCP, portStart: 443)],
            Self.wildcard: [PortRule(ruleID: 11, protocolNumber: TCP, portStart: 22), PortRule(ruleID: 11, protocolNumber: UDP, portStart: 22)],
        ]
        for pod in [0, 1] {
            try bench.apply(pod: pod, states: [.ingress: .defaultAllow, .egress: .policiesApplied], rules: [.egress: egress], domainRules: domains)
        }
        try bench.apply(pod: 2, states: [.ingress: .defaultAllow, .egress: .policiesApplied], rules: [.egress: egress])
        try bench.addDNSProxy("198.18.0.53")
        try bench.addDNSProxy("2001:db8::53")
        try bench.beatDNSHeartbeat(Self.hourFromNow)  // alive for the whole test
        return bench
    }

    @Test func aGrantAllowsItsPatternsPortsForThatPodOnly() throws {
        guard Privileges.require() else { return }
        let bench = try makeBench()
        let pod = Self.pod0
        try bench.grant(pod: 0, "198.19.0.7", [(Self.github, expires: Self.hourFromNow)])
        try bench.send(tcp(pod, "198.19.0.7", 2001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 10), "granted address and port")
        try bench.send(tcp(pod, "198.19.0.7", 2002, 22), pod: 0, .egress, expect: .drop(.networkPolicy), "another pattern's port")
        try bench.send(tcp(pod, "198.19.0.8", 2003, 443), pod: 0, .egress, expect: .drop(.networkPolicy), "an address never resolved")
        try bench.send(tcp(Self.pod1, "198.19.0.7", 2004, 443), pod: 1, .egress, expect: .drop(.networkPolicy),
                       "resolved by another pod only")
        try bench.send(tcp(pod, "198.19.9.1", 2005, 80), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 1), "CIDR rules still apply")

        try bench.grant(pod: 0, "198.19.0.9", [(Self.gone, expires: Self.hourFromNow), (Self.wildcard, expires: Self.hourFromNow)])
        try bench.send(udp(pod, "198.19.0.9", 2006, 22), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 11),
                       "second pattern of a grant; a pattern no longer in the policy is skipped")
        try bench.send(tcp(pod, "198.19.0.9", 2007, 443), pod: 0, .egress, expect: .drop(.networkPolicy), "not that grant's pattern")

        try bench.grant(pod: 0, "2001:db8:5::7", [(Self.github, expires: Self.hourFromNow)])
        try bench.send(tcp(Self.pod0v6, "2001:db8:5::7", 2008, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 10), "IPv6 grant")

        try bench.grant(pod: 2, "198.19.0.7", [(Self.github, expires: Self.hourFromNow)])
        try bench.send(tcp(Self.pod2, "198.19.0.7", 2009, 443), pod: 2, .egress, expect: .drop(.networkPolicy),
                       "a grant means nothing to a pod without domain rules")
        #expect(bench.cases == 9)
    }

    @Test func expiryStopsNewFlowsNotEstablishedOnes() throws {
        guard Privileges.require() else { return }
        let bench = try makeBench()
        let pod = Self.pod0
        try bench.grant(pod: 0, "198.19.0.7", [(Self.github, expires: Self.hourFromNow)])
        try bench.send(tcp(pod, "198.19.0.7", 3001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 10), "opened while fresh")
        try bench.grant(pod: 0, "198.19.0.7", [(Self.github, expires: Self.longAgo)])
        try bench.send(tcp("198.19.0.7", pod, 443, 3001), pod: 0, .ingress, expect: .tracked, "its reply after expiry")
        try bench.send(tcp(pod, "198.19.0.7", 3001, 443), pod: 0, .egress, expect: .tracked, "its next packet after expiry")
        try bench.send(tcp(pod, "198.19.0.7", 3002, 443), pod: 0, .egress, expect: .drop(.networkPolicy, rule: 10, reason: .domainExpired),
                       "a new flow after expiry, attributed to the domain rule")

        // A policy change re-evaluates tracked flows: the expired grant still carries established ones.
        try reapply(bench, pod: 0, domainRules: [Self.github: [PortRule(ruleID: 20, protocolNumber: TCP, portStart: 443)]])
        try bench.send(tcp(pod, "198.19.0.7", 3001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 20, reason: .reevaluated),
                       "established flow survives a policy change after expiry")
        try reapply(bench, pod: 0, domainRules: [Self.wildcard: [PortRule(ruleID: 21, protocolNumber: TCP, portStart: 22)]])
        try bench.send(tcp(pod, "198.19.0.7", 3001, 443), pod: 0, .egress, expect: .drop(.networkPolicy),
                       "its pattern removed from the policy: the flow is cut")
        #expect(bench.cases == 6)
    }

    @Test func withoutALiveProxyGrantsAllowNoNewFlow() throws {
        guard Privileges.require() else { return }
        let bench = try makeBench()
        let pod = Self.pod0
        try bench.grant(pod: 0, "198.19.0.7", [(Self.github, expires: Self.hourFromNow)])
        try bench.send(tcp(pod, "198.19.0.7", 6001, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 10), "proxy alive")
        let now = HostClock.monotonic.nanoseconds
        try bench.beatDNSHeartbeat(now - DatapathLimits.dnsHeartbeatTimeoutNanoseconds - 1_000_000)
        try bench.send(tcp(pod, "198.19.0.7", 6002, 443), pod: 0, .egress, expect: .drop(.networkPolicy, rule: 10, reason: .dnsProxyDown),
                       "last heartbeat too old: fail closed")
        try bench.send(tcp(pod, "198.19.0.7", 6001, 443), pod: 0, .egress, expect: .tracked, "an open flow goes on")
        try bench.send(udp(pod, "198.19.9.53", 6003, 53), pod: 0, .egress, expect: .drop(.none, reason: .dnsBypass), "still no bypass")
        try bench.beatDNSHeartbeat(0)
        try bench.send(tcp(pod, "198.19.0.7", 6004, 443), pod: 0, .egress, expect: .drop(.networkPolicy, rule: 10, reason: .dnsProxyDown),
                       "stopped (heartbeat 0)")
        try bench.beatDNSHeartbeat(HostClock.monotonic.nanoseconds)
        try bench.send(tcp(pod, "198.19.0.7", 6005, 443), pod: 0, .egress, expect: .pass(.networkPolicy, rule: 10), "back: the grant holds again")
        #expect(bench.cases == 6)
    }

    @Test func dnsGoesToTheProxyOnly() throws {
        guard Privileges.require() else { return }
        let bench = try makeBench()
        let pod = Self.pod0
        try bench.send(udp(pod, "198.18.0.53", 4001, 53), pod: 0, .egress, expect: .pass(.none, reason: .dnsProxy), "UDP to the proxy")
        try bench.send(udp("198.18.0.53", pod, 53, 4001), pod: 0, .ingress, expect: .tracked, "the proxy's answer")
        try bench.send(tcp(pod, "198.18.0.53", 4002, 53), pod: 0, .egress, expect: .pass(.none, reason: .dnsProxy), "TCP to the proxy")
        try bench.send(udp(Self.pod0v6, "2001:db8::53", 4003, 53), pod: 0, .egress, expect: .pass(.none, reason: .dnsProxy), "IPv6 proxy")
        try bench.send(udp(pod, "198.19.9.53", 4004, 53), pod: 0, .egress, expect: .drop(.none, reason: .dnsBypass), "another resolver")
        try bench.send(tcp(pod, "198.19.9.53", 4005, 53), pod: 0, .egress, expect: .drop(.none, reason: .dnsBypass), "another resolver, TCP")
        try bench.grant(pod: 0, "198.19.0.53", [(Self.wildcard, expires: Self.hourFromNow)])
        try bench.send(udp(pod, "198.19.0.53", 4006, 53), pod: 0, .egress, expect: .drop(.none, reason: .dnsBypass),
                       "a resolver's name resolved through the proxy")
        try bench.send(udp(pod, "198.19.9.53", 4007, 5353), pod: 0, .egress, expect: .drop(.networkPolicy), "port 5353 is not DNS")
        try bench.send(udp(Self.pod2, "198.19.9.53", 4008, 53), pod: 2, .egress, expect: .drop(.networkPolicy),
                       "a pod without domain rules: its policy decides")
        #expect(bench.cases == 9)
    }

    @Test func slotsFlipWithThePolicyAndASweepForgetsARemovedPod() throws {
        guard Privileges.require() else { return }
        let bench = try makeBench()
        let record = try #require(try bench.datapath.pod(ifindex: bench.ifindex(0)))
        #expect(record.hasDomainRules)
        #expect(try bench.datapath.domainRules(podID: 0, slot: record.slot).keys.sorted() == [Self.github, Self.wildcard])
        #expect(try bench.datapath.domainRules(podID: 0, slot: record.slot ^ 1).isEmpty, "the old slot is cleared")

        try reapply(bench, pod: 0, domainRules: [:])
        let plain = try #require(try bench.datapath.pod(ifindex: bench.ifindex(0)))
        #expect(!plain.hasDomainRules)
        #expect(try bench.datapath.domainRules(podID: 0, slot: 0).isEmpty && bench.datapath.domainRules(podID: 0, slot: 1).isEmpty)
        try bench.send(udp(Self.pod0, "198.19.9.53", 5001, 53), pod: 0, .egress, expect: .drop(.networkPolicy), "no domain rules: DNS is policy's")

        try bench.grant(pod: 1, "198.19.0.7", [(Self.github, expires: Self.hourFromNow)])
        #expect(try bench.datapath.grants(podID: 1).count == 1)
        try bench.remove(pod: 1)
        #expect(try bench.datapath.domainRules(podID: 1, slot: 0).isEmpty && bench.datapath.domainRules(podID: 1, slot: 1).isEmpty)
        #expect(try bench.datapath.grants(podID: 1).count == 1, "the grant waits for a sweep, read by no record")
        let swept = try bench.datapath.sweep { $0 == 1 }
        #expect(swept.grants == 1 && swept.flows == 0)
        #expect(try bench.datapath.grants(podID: 1).isEmpty && bench.datapath.grants(podID: 0).count == bench.datapath.grants().count)
    }

    /// Re-applies pod `pod`'s policy of `makeBench` with other domain rules.
    private func reapply(_ bench: VerdictBench, pod: Int, domainRules: [UInt64: [PortRule]]) throws {
        let egress = [PolicyRule(ruleID: 1, peer: cidr("198.19.9.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)])]
        try bench.apply(pod: pod, states: [.ingress: .defaultAllow, .egress: .policiesApplied], rules: [.egress: egress], domainRules: domainRules)
    }
}
