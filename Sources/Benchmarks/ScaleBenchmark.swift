import BPFKit
import Foundation
import DatapathModel
import Loader
import PolicyInput

/// One cluster policy over many pods: apply time and the kernel memory of the
/// tries when a ClusterPolicyEndpoint of `cidrs` CIDRs selects `pods` pods,
/// beside the same object selecting one pod (same node, same run).
public struct ScaleBenchmark {
    public var pods = 250
    public var cidrs = 10_000
    /// Rounds of (one pod, every pod); medians are reported.
    public var rounds = 3

    public init() {}

    public func run() throws -> [Figure] {
        let interfaces = (0..<pods).map { "nfscale\($0)" }
        return try ThrowawayNode.run(interfaces: interfaces) { root, sandbox in
            let (loader, _) = try Loader.initialize(root: root, migrate: false)
            for (index, interface) in interfaces.enumerated() {
                _ = try loader.attach(PodReference(namespace: "bench", name: "pod\(index)"), interface: interface, netns: sandbox.namespace.name,
                                      defaults: [.ingress: .allow, .egress: .allow])
            }
            let clock = ContinuousClock()
            var oneTimes: [Double] = [], allTimes: [Double] = [], oneMemory = 0, allMemory = 0, allTries = 0
            for round in 0..<rounds {
                for selecting in [1, pods] {
                    // A new name each time: every apply builds its trie anew, none replaces another.
                    let policy = BenchPolicy(kind: .admin(action: "Deny"), name: "scale-\(round)-\(selecting)", pods: (0..<selecting).map { "pod\($0)" },
                                             direction: .egress, cidrs: BenchPolicy.hosts(cidrs))
                    let parsed = try PolicyDocumentParser.parse(policy.json)
                    let elapsed = try clock.measure { _ = try loader.apply(parsed) }.milliseconds
                    let (bytes, tries) = try Self.trieMemory(loader)
                    if selecting == 1 {
                        oneTimes.append(elapsed)
                        oneMemory = bytes
                    } else {
                        allTimes.append(elapsed)
                        (allMemory, allTries) = (bytes, tries)
                    }
                    _ = try loader.delete(parsed.objects.map(\.key))
                }
            }
            let one = Figure.Baseline("the same object selecting 1 pod", Statistics.median(oneTimes))
            let oneBytes = Figure.Baseline("the tries of 1 pod", Double(oneMemory) / 1_048_576)
            return [
                Figure("baseline: apply \(cidrs) CIDRs selecting 1 pod (median of \(rounds))", one.value, .milliseconds, count: cidrs),
                Figure("apply \(cidrs) CIDRs selecting \(pods) pods (median of \(rounds))", Statistics.median(allTimes), .milliseconds,
                       baseline: one, goal: .atMost(2, .times), count: pods),
                Figure("baseline: kernel memory of the tries, 1 pod", oneBytes.value, .mebibytes),
                Figure("kernel memory of the tries, \(pods) pods (\(allTries) trie\(allTries == 1 ? "" : "s"))", Double(allMemory) / 1_048_576,
                       .mebibytes, baseline: oneBytes, goal: .atMost(1.05, .times), count: allTries),
            ]
        }
    }

    /// The memory the kernel charges for the tries pods' records name, and how many there are.
    static func trieMemory(_ loader: Loader) throws -> (bytes: Int, tries: Int) {
        var seen = Set<UInt32>(), bytes = 0
        for (_, record) in try loader.liveRecords() {
            for direction in record.tries.keys {
                guard let id = try loader.datapath.trieID(record, direction: direction), seen.insert(id).inserted else { continue }
                bytes += try BPFMap(id: id).memoryBytes() ?? 0
            }
        }
        return (bytes, seen.count)
    }
}
