import BPFKit
import CNetfenceABI
import CNetfenceShim
import Datapath
import DatapathModel
import Foundation
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
        let before = HostClock.monotonicCoarse.nanoseconds
        _ = try bench.datapath.run(frame, direction: .egress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace)
        let after = HostClock.monotonicCoarse.nanoseconds
        let events = try bench.events.drain().compactMap(VerdictEvent.decode)
        let event = try #require(events.first)
        #expect(events.count == 1)
        #expect((before...after).contains(event.timestampNanoseconds), "stamped on CLOCK_MONOTONIC_COARSE, read once for the decision")
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
            // Sorted: the two runs may start on different CPUs, whose events within one tick have no order.
            return try bench.events.drain().compactMap(VerdictEvent.decode).map(\.verdict).sorted { $0.rawValue < $1.rawValue }
        }
        #expect(try emitted(.all) == [.deny, .allow])
        #expect(try emitted(.deny) == [.deny])
        #expect(try emitted(.none) == [])
        #expect(try emitted(.all) == [.deny, .allow])
    }

    @Test func aBurstLargerThanTheRingIsCountedAsLost() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        let burst: UInt32 = 20_000
        // A test run stays on one CPU: the burst fills that CPU's ring, 80 bytes an event.
        let ringHolds = UInt64(DatapathLimits.eventCPURingBytes / ABISizes.eventRecord(captured: 0))
        let lostBefore = try bench.datapath.stat(.eventsLost)
        _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                   in: bench.interfaces.namespace, repeat: burst)
        let lost = try bench.datapath.stat(.eventsLost) - lostBefore
        let delivered = UInt64(try bench.events.drain().count)
        #expect(delivered == ringHolds)
        #expect(lost == UInt64(burst) - ringHolds)
        #expect(delivered + lost == UInt64(burst), "every event is delivered or counted lost")
    }

    /// `count` runs of one TCP packet that pod 0's ingress denies (an event each).
    private static func deny(_ bench: VerdictBench, _ count: UInt32) throws {
        _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                   in: bench.interfaces.namespace, repeat: count)
    }

    /// A reader gives records back only when it commits: one that stops before leaves them to the
    /// next reader (the position is the map's), one that commits is never read again.
    @Test func recordsStayInTheRingUntilAReaderCommits() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        func deny(_ count: UInt32) throws { try Self.deny(bench, count) }
        try deny(3)
        var first: EventRingReader? = try bench.datapath.eventReader()
        #expect(try first!.read(waitingUpTo: nil) { _ in } == 3)
        #expect(first!.position != first!.committedPosition, "read, not committed")
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
        #expect(skipping.skip(to: end) && skipping.committedPosition == start, "no going back before the committed position")
        // Where the four went: a reader that reads and does not commit says.
        var cpu = 0
        let probe = try bench.datapath.eventReader()
        _ = try probe.read(waitingUpTo: nil) { _ in cpu = probe.recordEnd.cpu }
        var twoIn = start, beyond = start
        twoIn.cpus[cpu] += 2 * UInt64(ABISizes.eventRecord(captured: 0))
        beyond.cpus[cpu] += 5 * UInt64(ABISizes.eventRecord(captured: 0))
        #expect(!skipping.skip(to: beyond), "not beyond what the CPU wrote")
        #expect(!skipping.skip(to: EventRingPosition(start.cpus + [0])), "not a position of other rings")
        #expect(skipping.skip(to: twoIn))
        #expect(try skipping.drain().count == 2, "skipped records count as read")
        #expect(try bench.datapath.eventReader().read(waitingUpTo: 0.05) { _ in } == 0, "an empty ring waits, then reads nothing")
        // Two readers take turns (two processes, say): each starts where the other gave back, none reads a record twice.
        let one = try bench.datapath.eventReader(), other = try bench.datapath.eventReader()
        try deny(3)
        #expect(try one.drain().count == 3)
        try deny(2)
        #expect(try other.drain().count == 2 && one.drain().isEmpty)
        try deny(1)
        #expect(try one.read(waitingUpTo: nil) { _ in } == 1)
        #expect(try other.drain().count == 1)
        one.commit()  // behind the other now: the position does not move back
        try deny(1)
        #expect(try other.drain().count == 1 && one.drain().isEmpty)
    }

    /// A watcher reads beside the consumer: what the consumer read and gave back is still there for it
    /// while the datapath has not written over it; once it has, the watcher skips to where the consumer
    /// is and counts the bytes, returning no record written over.
    @Test func aWatcherReadsBesideTheConsumerAndSkipsWhatWasWrittenOver() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        // Every event on one CPU's ring: the lap below is that ring's.
        try OneCPU.pinning { try watcherBesideTheConsumer(bench) }
    }

    private func watcherBesideTheConsumer(_ bench: VerdictBench) throws {
        let consumer = try bench.datapath.eventReader(), watcher = try bench.datapath.eventReader(watching: true)
        try Self.deny(bench, 10)
        #expect(try consumer.drain().count == 10)
        let seen = try watcher.drain()
        #expect(seen.count == 10 && seen.allSatisfy { VerdictEvent.decode($0)?.verdict == .deny }, "given back, not yet written over")
        #expect(try consumer.read(waitingUpTo: nil) { _ in } == 0, "a watcher takes nothing from the consumer")

        // Behind by as many records as the ring holds (the first one's bytes written over by the last),
        // then by more than a ring: each time nothing written over comes back, and the skip is counted.
        let record = ABISizes.eventRecord(captured: 0), fits = DatapathLimits.eventCPURingBytes / record
        var skipped = 0
        for lag in [fits, fits + 100] {
            for half in [lag / 2, lag - lag / 2] {
                try Self.deny(bench, UInt32(half))
                #expect(try consumer.drain().count == half)
            }
            skipped += lag * record
            #expect(try watcher.drain().isEmpty && watcher.skippedBytes == UInt64(skipped), "\(lag) behind: skipped, counted")
            try Self.deny(bench, 5)
            #expect(try consumer.drain().count == 5)
            let after = try watcher.drain()
            #expect(after.count == 5 && after.allSatisfy { VerdictEvent.decode($0) != nil }, "and on from where the consumer is")
        }
    }

    /// A reader waiting on the rings is not woken by each event that finds it caught up (its wait ends
    /// on `eventReaderPollSeconds` anyway), only by the event that fills a quarter of a CPU's ring.
    @Test func aWaitingReaderIsWokenByAQuarterOfTheRingNotByEachEvent() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        let reader = try bench.datapath.eventReader()
        let quarter = UInt32(DatapathLimits.eventCPURingBytes / 4 / ABISizes.eventRecord(captured: 0))
        /// How long `read(waitingUpTo: 2)` waits while `events` are written 0.2 s into its wait, and what it read.
        func waitWhile(writing events: UInt32) throws -> (seconds: Double, read: Int) {
            nonisolated(unsafe) let bench = bench
            let written = DispatchSemaphore(value: 0)
            let writer = Thread { usleep(200_000); try? Self.deny(bench, events); written.signal() }
            let clock = ContinuousClock(), start = clock.now
            writer.start()
            let read = try reader.read(waitingUpTo: 2) { _ in }
            let waited = start.duration(to: clock.now)
            written.wait()
            let rest = try reader.read(waitingUpTo: nil) { _ in }
            reader.commit()
            return (Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18, read + rest)
        }
        let few = try waitWhile(writing: 3)
        #expect(few.read == 3 && few.seconds >= 1.9, "three events do not end a 2 s wait: \(few)")
        let many = try waitWhile(writing: quarter + 10)
        #expect(many.read == Int(quarter) + 10 && many.seconds < 1.5, "a quarter of the ring ends it: \(many)")
        // With no reader asleep, a quarter rings no doorbell (an interrupt for nobody): a bell left
        // ringing would end the next sleep at once.
        try Self.deny(bench, quarter + 10)
        #expect(try reader.drain().count == Int(quarter) + 10)
        let clock = ContinuousClock(), start = clock.now
        #expect(try reader.read(waitingUpTo: 1) { _ in } == 0)
        #expect(start.duration(to: clock.now) >= .milliseconds(900), "a quarter crossed while no reader slept rang no doorbell")
    }

    /// Each CPU writes its own ring; the reader hands their events out oldest first across CPUs,
    /// and each record's place names the CPU it came from.
    @Test func eventsOfTwoCPUsAreReadInTheOrderTheyHappened() throws {
        guard Privileges.require() else { return }
        guard BPFMap.possibleCPUs >= 2, sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2 else {
            print("skipped: one CPU online; the rings of two CPUs need two")
            return
        }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        _ = try bench.events.drain()
        /// Denies `count` packets from `source` on `cpu`.
        func deny(on cpu: Int, from source: String, _ count: UInt32) throws {
            try Self.onCPU(cpu) {
                _ = try bench.datapath.run(tcp(source, "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                           in: bench.interfaces.namespace, repeat: count)
            }
        }
        // The coarse clock's tick is at most 4 ms: 20 ms apart, the three batches' stamps differ.
        try deny(on: 1, from: "198.18.2.1", 2)
        usleep(20_000)
        try deny(on: 0, from: "198.18.2.2", 3)
        usleep(20_000)
        try deny(on: 1, from: "198.18.2.3", 1)
        var read: [(source: String, cpu: Int)] = []
        try bench.events.drain { record in
            read.append((VerdictEvent.decode(Array(record))!.source.description, bench.events.recordEnd.cpu))
        }
        #expect(read.map(\.source) == ["198.18.2.1", "198.18.2.1", "198.18.2.2", "198.18.2.2", "198.18.2.2", "198.18.2.3"])
        #expect(read.map(\.cpu) == [1, 1, 0, 0, 0, 1])
    }

    /// Runs `body` with this thread on `cpu` only: a test run stays on the CPU it starts on, and the
    /// thread that enters the namespace for it inherits the CPU.
    private static func onCPU(_ cpu: Int, _ body: () throws -> Void) throws {
        var before = [UInt8](repeating: 0, count: 128), only = [UInt8](repeating: 0, count: 128)
        try #require(nf_get_affinity(0, &before, before.count) == 0)
        defer { _ = nf_set_affinity(0, before, before.count) }
        only[cpu / 8] = 1 << (cpu % 8)
        try #require(nf_set_affinity(0, only, only.count) == 0, "this thread may run on CPU \(cpu)")
        try body()
    }

    /// Records of every size go round a CPU's ring several times, the ones at its end running on
    /// into the overflow: each comes back whole, its capture byte for byte, none lost or repeated.
    @Test func recordsOfEverySizeGoRoundTheRingWhole() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        try bench.datapath.write(DatapathSettings(eventLevel: .all, snaplen: DatapathSettings.maxSnaplen, captureVerdicts: .denied))
        _ = try bench.events.drain()
        var written = 0, batches = 0, port: UInt16 = 1000
        // Payloads whose records (event, capture, 8-byte alignment) do not divide the ring: 3 laps of CPU 0's.
        try Self.onCPU(0) { while written < 3 * DatapathLimits.eventCPURingBytes {
            batches += 1
            var frames: [(port: UInt16, bytes: [UInt8])] = []
            for size in stride(from: 0, to: 560, by: 37) {
                port &+= 1
                let frame = PacketBuilder.frame(from: ip("198.18.2.1"), to: ip("198.18.1.10"), .udp(sourcePort: port, destinationPort: 80, payload: size))
                _ = try bench.datapath.run(frame, direction: .ingress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace)
                frames.append((port, frame))
                written += ABISizes.eventRecord(captured: min(frame.count, DatapathSettings.maxSnaplen))
            }
            let records = try bench.events.drain()
            try #require(records.count == frames.count, "batch \(batches): \(records.count) of \(frames.count) events")
            for (record, frame) in zip(records, frames) {
                let event = try #require(VerdictEvent.decode(record))
                let packet = record.withUnsafeBytes { Array(VerdictEvent.packet(in: $0)) }
                #expect(event.sourcePort == frame.port && packet == Array(frame.bytes.prefix(DatapathSettings.maxSnaplen)),
                        "batch \(batches): an event and its capture come back in order, as written")
            }
        } }
        #expect(try bench.datapath.stat(.eventsLost) == 0)
    }

    /// Two writers at once on a CPU (a test run, which may be preempted, and a packet) can leave a
    /// ring's head behind its tail, or a record running past the head. Neither stops the ring: the
    /// writer goes on at the tail, the reader drops what was torn, and the next event comes whole.
    @Test func aRingThatTwoWritersLeftInDisorderGoesOn() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultDeny, .egress: .defaultAllow])
        let rings = try BPFMap(id: bench.events.mapID), cpu0 = [UInt8](repeating: 0, count: 4)
        func place(head: UInt64, tail: UInt64) throws {
            var ring = try #require(try rings.lookup(key: cpu0))
            ring.withUnsafeMutableBytes {
                $0.storeBytes(of: head, as: UInt64.self)
                $0.storeBytes(of: tail, toByteOffset: nf_event_ring_tail_offset(), as: UInt64.self)
            }
            try rings.update(key: cpu0, value: ring)
        }
        func denyOnCPU0() throws -> [VerdictEvent] {
            try Self.onCPU(0) {
                _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(0),
                                           in: bench.interfaces.namespace)
            }
            return try bench.events.drain().compactMap(VerdictEvent.decode)
        }
        _ = try bench.events.drain()
        try place(head: 1_000, tail: 5_000)
        #expect(try denyOnCPU0().map(\.sourcePort) == [999], "the head behind the tail: the writer goes on at the tail")
        try place(head: 8_040, tail: 8_000)
        #expect(try bench.events.drain().isEmpty, "half a record before the head: dropped")
        #expect(try denyOnCPU0().map(\.sourcePort) == [999], "the next one whole")
        #expect(try bench.datapath.stat(.eventsLost) == 0)
    }

    /// The first snaplen bytes of a denied packet ride in its event; allowed ones only when the
    /// settings capture every verdict; no capture at snaplen 0; a short packet is captured whole.
    @Test func anEventCarriesThePacketsFirstBytes() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 1)
        try bench.apply(pod: 0, states: [.ingress: .defaultAllow, .egress: .policiesApplied], rules: [.egress: [
            PolicyRule(ruleID: 5, peer: cidr("198.18.20.0/24"), ports: [PortRange(protocolNumber: UDP, start: 53)]),
        ]])
        var settings = DatapathSettings(eventLevel: .all, snaplen: 64, captureVerdicts: .denied)
        try bench.datapath.write(settings)
        var port: UInt16 = 20_000
        func send(_ destinationPort: UInt16, payload: Int) throws -> (frame: [UInt8], event: VerdictEvent, packet: [UInt8]) {
            port += 1
            let frame = PacketBuilder.frame(from: ip("198.18.1.10"), to: ip("198.18.20.1"),
                                            .udp(sourcePort: port, destinationPort: destinationPort, payload: payload))
            _ = try bench.datapath.run(frame, direction: .egress, ifindex: bench.ifindex(0), in: bench.interfaces.namespace)
            let records = try bench.events.drain()
            try #require(records.count == 1)
            let event = try #require(VerdictEvent.decode(records[0]))
            return (frame, event, records[0].withUnsafeBytes { Array(VerdictEvent.packet(in: $0)) })
        }
        let denied = try send(54, payload: 300)
        #expect(denied.event.verdict == .deny && denied.event.captured == 64 && denied.packet == Array(denied.frame.prefix(64)))
        #expect(denied.event.length == UInt32(denied.frame.count), "the original length beside the capture")
        let allowed = try send(53, payload: 300)
        #expect(allowed.event.verdict == .allow && allowed.event.captured == 0 && allowed.packet.isEmpty)
        settings.captureVerdicts = .all
        settings.snaplen = DatapathSettings.maxSnaplen
        try bench.datapath.write(settings)
        let whole = try send(53, payload: 8)
        #expect(whole.event.captured == whole.frame.count && whole.packet == whole.frame, "a packet shorter than snaplen is captured whole")
        let long = try send(53, payload: 1200)
        #expect(long.event.captured == DatapathSettings.maxSnaplen && long.packet == Array(long.frame.prefix(DatapathSettings.maxSnaplen)))
        settings.snaplen = 0
        try bench.datapath.write(settings)
        #expect(try send(54, payload: 300).event.captured == 0)
    }

    /// A pod's own level decides its events; the others follow the node's.
    @Test func aPodsOwnLevelOverridesTheNodes() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 2)
        for pod in 0..<2 { try bench.apply(pod: pod, states: [.ingress: .defaultAllow, .egress: .defaultAllow]) }
        try bench.datapath.setEventLevel(.deny)
        func eventsOfAllowedFlows() throws -> [UInt32] {
            for pod in 0..<2 {
                _ = try bench.datapath.run(udp("198.18.2.1", "198.18.1.10", UInt16.random(in: 10_000...60_000), 53), direction: .ingress,
                                           ifindex: bench.ifindex(pod), in: bench.interfaces.namespace)
            }
            return try bench.events.drain().compactMap(VerdictEvent.decode).map(\.podID).sorted()  // runs on two CPUs: no order within a tick
        }
        #expect(try eventsOfAllowedFlows() == [])
        try bench.datapath.setEventLevel(.all, podID: 1)
        #expect(try bench.datapath.eventLevel(podID: 1) == .all && bench.datapath.eventLevel(podID: 0) == nil)
        #expect(try eventsOfAllowedFlows() == [1], "only the pod with its own level all")
        try bench.datapath.setEventLevel(.all)
        try bench.datapath.setEventLevel(EventLevel.none, podID: 1)  // not .none: that is "no level of its own"
        let silenced = try eventsOfAllowedFlows()
        #expect(silenced == [0], "a pod's own none silences it under a node at all: \(silenced)")
        try bench.datapath.resetEventState(podID: 1)
        #expect(try eventsOfAllowedFlows() == [0, 1] && bench.datapath.ownEventLevels().isEmpty)
    }

    /// Beyond the rate, events are not written but counted, per pod, direction and verdict:
    /// every event is written or counted; another pod's events are untouched by one pod's flood.
    @Test func rateLimitsSuppressEventsAndCountEveryOne() throws {
        guard Privileges.require() else { return }
        let bench = try VerdictBench(pods: 2)
        for pod in 0..<2 { try bench.apply(pod: pod, states: [.ingress: .defaultDeny, .egress: .defaultAllow]) }
        try bench.datapath.write(DatapathSettings(eventLevel: .all, snaplen: 0, captureVerdicts: .denied, podEventRate: 10))
        func flood(_ pod: Int, _ count: UInt32) throws {
            _ = try bench.datapath.run(tcp("198.18.2.1", "198.18.1.10", 999, 80), direction: .ingress, ifindex: bench.ifindex(pod),
                                       in: bench.interfaces.namespace, repeat: count)
        }
        try flood(0, 250)
        try flood(1, 5)
        let written = try bench.events.drain().compactMap(VerdictEvent.decode)
        let pod0 = written.filter { $0.podID == 0 }.count, pod1 = written.filter { $0.podID == 1 }.count
        let suppressed0 = try bench.datapath.suppressedEvents(podID: 0, direction: .ingress)
        #expect(UInt64(pod0) + suppressed0.total == 250, "each event written or counted: \(pod0) + \(suppressed0.total)")
        #expect(pod0 <= 20 && suppressed0.byVerdict[.deny] == suppressed0.total, "at most the rate a window (two, across a window's end)")
        let suppressed1 = try bench.datapath.suppressedEvents(podID: 1, direction: .ingress)
        #expect(pod1 == 5 && suppressed1.total == 0, "the other pod loses nothing")
        #expect(try bench.datapath.suppressedEvents(podID: 0, direction: .egress).total == 0)
        #expect(try bench.datapath.suppressedEvents().map(\.podID) == [0])

        // The node's limit: what it holds back is counted for the pod whose event it was.
        try bench.datapath.resetEventState(podID: 0)
        try bench.datapath.resetEventState(podID: 1)
        try bench.datapath.write(DatapathSettings(eventLevel: .all, snaplen: 0, captureVerdicts: .denied, nodeEventRate: 30))
        try flood(0, 100)
        try flood(1, 100)
        let total = try bench.events.drain().count
        let suppressed = try (0..<2).map { try bench.datapath.suppressedEvents(podID: UInt32($0), direction: .ingress).total }
        #expect(UInt64(total) + suppressed[0] + suppressed[1] == 200 && total <= 60, "\(total) written, \(suppressed) suppressed")
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
