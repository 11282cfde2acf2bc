import BPFKit
import DatapathModel
import Foundation
import Inspection

/// Where a verdict log comes from: netfence's ring (`EventStream`), or the AWS agent's.
public protocol VerdictSource: AnyObject {
    /// Everything ready now, item by item; losses it knows of first. With `wait`, when
    /// nothing is ready it waits up to that many seconds for the first event.
    func drain(lossInterval: TimeInterval, waitingUpTo wait: Double?, _ visit: (EventItem) throws -> Void) throws
    /// The longest pod name it will show, for table widths.
    var longestPodName: Int { get }
}

extension EventStream: VerdictSource {}

/// The AWS agent's event ring is not where the agent pins it.
public struct NotAnEKSNode: Error, CustomStringConvertible {
    public let ringPath: String
    public var description: String {
        "nothing is pinned at \(ringPath): the AWS network-policy agent does not run here (or pins elsewhere: --aws-root)"
    }
}

/// The AWS agent's `global_policy_events` ring read the way netfence reads its own:
/// its records (IPv4 32 B, IPv6 56 B) in words, each attributed to the pod whose
/// address is the flow's pod end (from the agent's conntrack: owner address →
/// interface → the pod identifier of the program attached there).
///
/// The agent's records carry no timestamp (the time shown is when netfence read
/// them) and no rule; its datapath counts no ring-buffer failure, so a loss there
/// cannot be reported. A ring buffer has one consumer position: when the agent
/// itself reads the ring (its policy event logs on), each event reaches only one
/// of the two readers.
public final class AWSEventStream: VerdictSource {
    private let reader: RingBufferReader
    private let conntrack: BPFMap?
    private let awsRoot: String
    private var pods: [UInt32: String] = [:]
    private var interfaces: [UInt32: String] = [:]
    private var podsByAddress: [IPAddress: UInt32] = [:]
    private var lastRefresh = Date.distantPast
    /// Other processes that hold the ring open (the agent reading it), as `pid N (name)`.
    public let otherReaders: [String]

    public init(awsRoot: String = AWSAgent.root) throws {
        self.awsRoot = awsRoot
        let ringPath = "\(awsRoot)/maps/global_\(AWSAgent.Object.policyEvents.rawValue)"
        guard let ring = try BPFFilesystem.pinnedMap(at: ringPath) else { throw NotAnEKSNode(ringPath: ringPath) }
        reader = try RingBufferReader(map: ring)
        conntrack = try BPFFilesystem.pinnedMap(at: "\(awsRoot)/maps/global_\(AWSAgent.Object.conntrackMap.rawValue)")
        otherReaders = MapHolders.processes(holding: try ring.info().id)
        try refresh()
    }

    /// Pods by interface (the programs' pins), interfaces by index, pod interfaces by owner address (conntrack).
    private func refresh() throws {
        lastRefresh = Date()
        let attached = try AWSPods.interfaces(awsRoot: awsRoot)
        pods = attached.mapValues(\.podIdentifier)
        interfaces = attached.mapValues(\.interface)
        guard let conntrack else { return }
        try conntrack.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let entry = AWSConntrackEntry.decode(key: batch.key(index), value: batch.value(index)) else { continue }
                podsByAddress[entry.owner] = entry.ifindex
            }
        }
    }

    public var longestPodName: Int { pods.values.map(\.count).max() ?? 0 }

    public func drain(lossInterval: TimeInterval = 1, waitingUpTo wait: Double? = nil, _ visit: (EventItem) throws -> Void) throws {
        let now = Date()
        var refreshed = false
        try reader.drain(waitingUpTo: wait) { record in
            guard let event = AWSPolicyEvent.decode(record) else { return }
            if podsByAddress[event.podAddress] == nil, !refreshed, Date().timeIntervalSince(lastRefresh) > 1 {
                try refresh()  // a flow newer than our view of the agent's conntrack
                refreshed = true
            }
            try visit(.event(decode(event, at: now)))
        }
    }

    private func decode(_ event: AWSPolicyEvent, at time: Date) -> DecodedEvent {
        let ifindex = podsByAddress[event.podAddress]
        let pod = ifindex.flatMap { pods[$0] }
        let echo = IPProtocolNumber.carriesEchoIdentifier(UInt8(truncatingIfNeeded: event.protocolNumber))
        return DecodedEvent(
            time: time, pod: pod ?? "unknown \(event.podAddress.text(as: event.family))",
            podNamespace: pod.flatMap { $0.split(separator: "@").last.map(String.init) }, interface: ifindex.flatMap { interfaces[$0] },
            direction: event.isEgress ? .egress : .ingress, family: event.family, protocolNumber: UInt8(truncatingIfNeeded: event.protocolNumber),
            source: event.source, sourcePort: echo ? 0 : UInt16(truncatingIfNeeded: event.sourcePort),
            destination: event.destination, destinationPort: echo ? 0 : UInt16(truncatingIfNeeded: event.destinationPort),
            verdict: event.verdict, tier: event.tier ?? .none, policy: "aws-agent", rule: nil, reason: .policy, bytes: event.packetBytes,
            revision: 0)
    }
}
