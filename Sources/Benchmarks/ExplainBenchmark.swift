import BPFKit
import DatapathModel
import Foundation
import Loader
import PolicyInput

/// How long `policy explain` works on a pod with a large policy: the whole
/// explanation (live state read, reference decision, words, the loaded
/// program's side-effect-free confirmation), beside the trie lookup loop that
/// finds the peer's prefix (its share of the work), in the same run.
public struct ExplainBenchmark {
    public var prefixes = 60_000
    public var samples = 20

    public init() {}

    public func run() throws -> [Figure] {
        try ThrowawayNode.run(interfaces: ["pod0"]) { root, sandbox in
            let (loader, _) = try Loader.initialize(root: root, migrate: false)
            let pod = PodReference(namespace: "bench", name: "pod0")
            _ = try loader.attach(pod, interface: "pod0", netns: sandbox.namespace.name, defaults: [.ingress: .allow, .egress: .allow])
            // As a controller writes a large policy: PolicyEndpoints of at most 1,000 rules each.
            _ = try loader.apply(try PolicyDocumentParser.parse(BenchPolicy(name: "big", pods: ["pod0"], cidrs: BenchPolicy.hosts(prefixes),
                                                                            perObject: 1000).json))
            let question = FlowQuestion(pod: pod, direction: .ingress, peer: BenchPolicy.address(prefixes - 1), protocolNumber: IPProtocolNumber.tcp, port: 443)
            let record = try require(try loader.liveRecords().values.first, "the pod's record")
            let clock = ContinuousClock()
            var explain: [Double] = [], lookups: [Double] = []
            for _ in 0..<samples {
                let answer = try clock.measure {
                    let explanation = try loader.explain(question)
                    guard explanation.kernel?.agrees == true, explanation.decision.verdict == "allow" else {
                        throw BenchmarkError("explain did not find the rule the peer matches; the figures would be wrong")
                    }
                }
                explain.append(answer.milliseconds)
                lookups.append(try clock.measure {
                    _ = try loader.datapath.liveTrieEntry(record, direction: .ingress, peer: question.peer, family: .ipv4)
                }.milliseconds)
            }
            let loop = Figure.Baseline("the trie lookup loop alone (prefix length found by binary search)", Statistics.median(lookups))
            return [
                Figure("baseline: \(loop.name)", loop.value, .milliseconds, count: samples),
                Figure("policy explain, \(prefixes.formatted()) prefixes (median of \(samples))", Statistics.median(explain), .milliseconds,
                       baseline: loop, goal: .atMost(20), count: samples),
            ]
        }
    }
}

/// `#require` for benchmarks: a value that must be there, or a benchmark error.
func require<Value>(_ value: Value?, _ what: @autoclosure () -> String = "a value the benchmark needs") throws -> Value {
    guard let value else { throw BenchmarkError("\(what()) is missing; the figures would be wrong") }
    return value
}
