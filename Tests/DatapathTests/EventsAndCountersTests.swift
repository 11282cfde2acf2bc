import BPFKit
import Datapath
import DatapathModel
import Glibc
import HostKit
import Testing
import TestSupport

@Suite(.serialized) struct EventsAndCountersTests {
    @Test func anEventCarriesTheWholeDecision() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultAllow, .egress: .policiesApplied], rules: [.egress: [
            PolicyRule(ruleID: 401, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: UDP, start: 53)]),
        ]])
        let frame = udp("198.18.1.10", "198.18.20.1", 5353, 54)
        let before = HostClock.monotonic.nanoseconds
        _ = try bench.datapath.run(frame, direction: .egress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace)
        let after = HostClock.monotonic.nanoseconds
        let events = try bench.events.drain().compactMap(VerdictEvent.decode)
        let event = try #require(events.first)
        #expect(events.count == 1)
        #expect((before...after).contains(event.timestampNanoseconds), "stamped on CLOCK_MONOTONIC")
        #expect(event.ifindex == bench.ifindex(0) && event.podID == 0 && event.revision == 1)
        #expect(event.source == ip("198.18.1.10") && event.destination == ip("198.18.20.1"))
        #expect(event.sourcePort == 5353 && event.destinationPort == 54)
        #expect(event.family == 4 && event.protocolNumber == UDP && event.direction == .egress)
        #expect(event.verdict == .deny && event.tier == .networkPolicy && event.ruleID == 0 && event.reason == .policy)
        #expect(event.length == UInt32(frame.count))

        _ = try bench.datapath.run(udp("198.18.1.10", "198.18.20.1", 5354, 53), direction: .egress, ifindex: bench.ifindex(0),
                                   in: bench.interfaces.namespace)
        let allowed = try #require(try bench.events.drain().compactMap(VerdictEvent.decode).first)
        #expect(allowed.verdict == .allow && allowed.ruleID == 401, "the rule that decided, for attribution")
    }

    @Test func theEventLevelSwitchesAtRuntime() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 7, peer: cidr("198.18.2.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)]),
        ]])
        func emitted(_ level: EventLevel) throws -> [Verdict] {
            try bench.datapath.setEventLevel(level)
            for (port, sport) in [(80, UInt16.random(in: 10_000...60_000)), (81, UInt16.random(in: 10_000...60_000))] {
                _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", sport, UInt16(port)), direction: .ingress,
                                           ifindex: bench.ifindex(0), in: bench.interfaces.namespace)
            }
            return try bench.events.drain().compactMap(VerdictEvent.decode).map(\.verdict)
        }
        #expect(try emitted(.all) == [.allow, .deny])
        #expect(try emitted(.deny) == [.deny])
        #expect(try emitted(.none) == [])
        #expect(try emitted(.all) == [.allow, .deny])
    }

    @Test func aBurstLargerThanTheRingIsCountedAsLost() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        let burst: UInt32 = 20_000
        // Each record takes 8 bytes of header plus the 80-byte event in the ring.
        let ringHolds = UInt64(DatapathLimits.eventRingBytes / (8 + VerdictEvent.size))
        let lostBefore = try bench.datapath.stat(.eventsLost)
        _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                   in: bench.interfaces.namespace, repeat: burst)
        let lost = try bench.datapath.stat(.eventsLost) - lostBefore
        let delivered = UInt64(try bench.events.drain().count)
        #expect(delivered == ringHolds)
        #expect(lost == UInt64(burst) - ringHolds)
        #expect(delivered + lost == UInt64(burst), "every event is delivered or counted lost")
    }

    /// A reader gives records back only when it commits: one that stops before leaves them to the
    /// next reader (the position is the map's), one that commits is never read again.
    @Test func recordsStayInTheRingUntilAReaderCommits() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        func deny(_ count: UInt32) throws {
            _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                       in: bench.interfaces.namespace, repeat: count)
        }
        try deny(3)
        var first: RingBufferReader? = try bench.datapath.eventReader()
        #expect(try first!.read(waitingUpTo: nil) { _ in } == 3)
        #expect(first!.position > first!.committedPosition, "read, not committed")
        first = nil  // dies without committing
        let second = try bench.datapath.eventReader()
        #expect(try second.read(waitingUpTo: nil) { _ in } == 3, "the next reader gets them all")
        let end = second.position
        second.commit()
        try deny(2)
        #expect(try bench.datapath.eventReader().drain().count == 2, "committed records are not read again")
        try deny(4)
        let skipping = try bench.datapath.eventReader()
        let start = skipping.committedPosition
        #expect(end < start && !skipping.skip(to: end), "no going back before the committed position")
        #expect(skipping.skip(to: start + 2 * UInt64((8 + VerdictEvent.size + 7) / 8 * 8)))
        #expect(try skipping.drain().count == 2, "skipped records count as read")
        #expect(try bench.datapath.eventReader().read(waitingUpTo: 0.05) { _ in } == 0, "an empty ring waits, then reads nothing")
    }

    @Test func countersSplitByPodDirectionAndVerdict() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 2)
        try bench.apply(pod: 0, states: [.ingress: .policiesApplied, .egress: .defaultAllow], rules: [.ingress: [
            PolicyRule(ruleID: 1, peer: cidr("198.18.2.0/24"), ports: [PortRange(protocolNumber: TCP, start: 80)]),
        ]])
        try bench.apply(pod: 1, states: [.ingress: .defaultAllow, .egress: .defaultAllow])
        let allowed = tcp("198.18.2.1", "198.18.1.10", 1000, 80), denied = udp("198.18.2.1", "198.18.1.10", 1000, 80)
        _ = try bench.datapath.run(allowed, direction: .ingress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace, repeat: 3)
        _ = try bench.datapath.run(denied, direction: .ingress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace, repeat: 2)
        _ = try bench.datapath.run(denied, direction: .egress, ifindex: bench.ifindex(1), in: bench.interfaces.namespace)
        let allowCount = try bench.datapath.counter(podID: 0, direction: .ingress, verdict: .allow)
        let denyCount = try bench.datapath.counter(podID: 0, direction: .ingress, verdict: .deny)
        #expect(allowCount.packets == 3 && allowCount.bytes == 3 * UInt64(allowed.count), "the first packet and two on the fast path")
        #expect(denyCount.packets == 2 && denyCount.bytes == 2 * UInt64(denied.count))
        #expect(try bench.datapath.counter(podID: 1, direction: .egress, verdict: .allow).packets == 1)
        #expect(try bench.datapath.counter(podID: 1, direction: .ingress, verdict: .allow).packets == 0)
    }

    @Test func unparseableDropsAndUnknownInterfacesAreCounted() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 2)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        let cut = Array(udp("198.18.2.1", "198.18.1.10", 1, 2).prefix(14 + 20 + 2))
        _ = try bench.datapath.run(cut, direction: .ingress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace, repeat: 4)
        _ = try bench.datapath.run(cut, direction: .ingress, ifindex: bench.ifindex(1), in: bench.interfaces.namespace, repeat: 5)
        #expect(try bench.datapath.stat(.unparseableDrops) == 4)
        #expect(try bench.datapath.stat(.unknownInterface) == 5)
    }
}
