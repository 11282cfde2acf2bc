import BPFKit
import BPFObjects
import Datapath
import DatapathModel
import Foundation
import NodeNetwork

/// ns per packet through BPF_PROG_TEST_RUN for the datapath's three paths,
/// beside an empty tc program measured in the same run (the machine is noisy:
/// the ratio to the floor holds where absolute times drift).
public struct DatapathBenchmark {
    public enum Path: String, CaseIterable, Sendable {
        case established = "established flow"
        case newAllowed = "new allowed flow"
        case newDenied = "new denied flow"
    }

    /// How hard to measure: rounds of `repeat` runs, the median of the rounds,
    /// the minimum of `passes` such medians; the floor is measured the same way,
    /// interleaved with each case.
    public var repeatCount: UInt32 = 20_000
    public var rounds = 9
    public var passes = 5
    /// Distinct new flows sampled one run each (a repeated new flow would be established after its first run).
    public var newFlowSamples = 1_000
    public var prefixCounts = [10, 10_000, 60_000]

    public init() {}

    /// Runs every case in a throwaway namespace whose one interface stands for the pod.
    public func run() throws -> [Figure] {
        let sandbox = try SandboxInterfaces(name: ThrowawayNode.namespace, interfaces: ["pod0"])
        defer { sandbox.remove() }
        return try run(in: sandbox.namespace, ifindex: sandbox.ifindexes["pod0"]!)
    }

    /// Runs every case inside `namespace`, where interface `ifindex` stands for the pod.
    func run(in namespace: NetworkNamespace, ifindex: UInt32) throws -> [Figure] {
        let empty = try BPFObjectFile(bytes: EmbeddedBPFObject.empty.bytes, name: "empty").program(named: "nf_empty")
        let pod = IPAddress("198.18.1.10")!
        let probe = PacketBuilder.frame(from: pod, to: IPAddress("198.19.0.1")!, .tcp(sourcePort: 40000, destinationPort: 443))
        let floorRepeated = { try Double(empty.testRun(packet: probe, repeat: repeatCount, ifindex: ifindex, in: namespace).nanosecondsPerRun) }
        let floorSingle = { try Double(empty.testRun(packet: probe, repeat: 1, ifindex: ifindex, in: namespace).nanosecondsPerRun) }
        let floor = try interleaved(floorRepeated, floorRepeated, samples: rounds)
        var results = [Figure("empty tc program (floor)", floor.measured, .nanoseconds)]

        for count in prefixCounts {
            let datapath = try Datapath()
            try datapath.setEventLevel(.none)
            let policy = try PolicyCompiler.compile(Self.policy(prefixes: count))
            try datapath.apply(ifindex: ifindex, podID: 0, states: [.ingress: .defaultAllow, .egress: .policiesApplied],
                               policies: [.egress: policy])
            // The peer sits in the last prefix; the rule allows TCP 443 only.
            let peer = Self.peer(index: count - 1)
            func frame(_ port: UInt16, _ destinationPort: UInt16) -> [UInt8] {
                PacketBuilder.frame(from: pod, to: peer, .tcp(sourcePort: port, destinationPort: destinationPort))
            }
            func runs(_ frame: [UInt8], repeat count: UInt32) throws -> Double {
                Double(try datapath.run(frame, direction: .egress, ifindex: ifindex, in: namespace, repeat: count).nanosecondsPerRun)
            }
            for path in Path.allCases {
                let measured: (measured: Double, floor: Double)
                switch path {
                case .established:
                    _ = try runs(frame(40000, 443), repeat: 1)
                    measured = try interleaved({ try runs(frame(40000, 443), repeat: repeatCount) }, floorRepeated, samples: rounds)
                case .newDenied:
                    measured = try interleaved({ try runs(frame(40001, 444), repeat: repeatCount) }, floorRepeated, samples: rounds)
                case .newAllowed:
                    // Each sample a distinct flow: a repeated one is established after its first run.
                    var port: UInt16 = 1024
                    measured = try interleaved({ port &+= 1; return try runs(frame(port, 443), repeat: 1) }, floorSingle,
                                               samples: newFlowSamples, passes: 1)
                }
                let goal: Goal? = switch (path, count) {
                case (.established, _): .atMost(100, .over)
                case (.newDenied, 10_000): .atMost(250, .over)
                default: nil
                }
                // Against the floor measured beside it, not the first one: the machine drifts within a run too.
                results.append(Figure("\(path.rawValue), \(count.formatted()) prefixes", measured.measured, .nanoseconds,
                                      baseline: .init("empty tc program, measured alongside", measured.floor), comparison: .over, goal: goal))
            }
        }
        return results
    }

    /// `count` disjoint /32s in 198.18.0.0/15 and beyond, one rule allowing TCP 443 to all of them.
    static func policy(prefixes count: Int) -> [PolicyRule] {
        (0..<count).map { PolicyRule(ruleID: 1, peer: IPPrefix(address: peer(index: $0), length: 128),
                                     ports: [PortRange(protocolNumber: IPProtocolNumber.tcp, start: 443)]) }
    }

    static func peer(index: Int) -> IPAddress {
        IPAddress(ipv4: [198, 18 + UInt8(index >> 16), UInt8(index >> 8 & 0xff), UInt8(index & 0xff)])
    }

    /// `samples` measurements of the case and of the floor, alternating, per
    /// pass; the minimum over passes of each one's median (noise only adds time).
    private func interleaved(_ measure: () throws -> Double, _ floor: () throws -> Double, samples: Int,
                             passes: Int? = nil) throws -> (measured: Double, floor: Double) {
        var best = (measured: Double.infinity, floor: Double.infinity)
        for _ in 0..<(passes ?? self.passes) {
            var measured: [Double] = [], floors: [Double] = []
            for _ in 0..<samples {
                measured.append(try measure())
                floors.append(try floor())
            }
            best = (min(best.measured, Statistics.median(measured)), min(best.floor, Statistics.median(floors)))
        }
        return best
    }
}
