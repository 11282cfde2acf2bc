import BPFKit
import Datapath
import DatapathModel
import Foundation
import Loader
import PolicyInput

/// Attach and apply times of the loader, beside what attaching costs when each
/// pod loads its own programs (the AWS agent's way: a verifier run per pod).
public struct LoaderBenchmark {
    public var pods = 100
    public var cidrs = 1_000
    /// Pods that load their own programs for the baseline (each takes a verifier run).
    public var baselineLoads = 5

    public init() {}

    /// Attaches `pods` pods on throwaway interfaces under a throwaway pin root,
    /// then applies a policy of `cidrs` CIDRs to the first.
    public func run() throws -> [Figure] {
        let interfaces = (0..<pods).map { "nfbench\($0)" }
        return try ThrowawayNode.run(interfaces: interfaces) { root, sandbox in
            try run(root: root, interfaces: interfaces, netns: sandbox.namespace.name)
        }
    }

    func run(root: PinRoot, interfaces: [String], netns: String) throws -> [Figure] {
        var (figures, raw) = try attachAndApply(root: root, interfaces: interfaces, netns: netns)
        figures.append(try applyWithKeeper(root: root, raw: raw))
        return figures
    }

    /// Attaches every pod, then applies the policy, beside their baselines; returns the raw trie writes too.
    private func attachAndApply(root: PinRoot, interfaces: [String], netns: String) throws -> ([Figure], Figure.Baseline) {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        let clock = ContinuousClock()
        var attachTimes: [Double] = []
        for (index, interface) in interfaces.enumerated() {
            let elapsed = try clock.measure {
                _ = try loader.attach(PodReference(namespace: "bench", name: "pod\(index)"), interface: interface, netns: netns,
                                      defaults: [.ingress: .allow, .egress: .allow])
            }
            attachTimes.append(elapsed.milliseconds)
        }
        var baselineTimes: [Double] = []
        for _ in 0..<baselineLoads {
            baselineTimes.append(try clock.measure { _ = try Datapath() }.milliseconds)
        }

        let document = BenchPolicy(name: "bench", pods: ["pod0"], cidrs: BenchPolicy.hosts(cidrs)).json
        var parsed = ParsedPolicies()
        let parse = try clock.measure { parsed = try PolicyDocumentParser.parse(document) }
        // What apply would change, computed as apply computes it and written nowhere (`apply --dry-run`).
        let dryRun = try clock.measure { _ = try loader.plan(parsed) }
        let apply = try clock.measure { _ = try loader.apply(parsed) }
        let rules = (0..<cidrs).map { PolicyRule(ruleID: 1, peer: IPPrefix(address: BenchPolicy.address($0), length: 128)) }
        let compiled = try PolicyCompiler.compile(rules)
        let rawWrites = try clock.measure { _ = try loader.datapath.makeTrie(compiled) }
        let perPodLoad = Figure.Baseline("load programs per pod (median of \(baselineLoads))", Statistics.median(baselineTimes))
        let raw = Figure.Baseline("\(cidrs) raw trie writes", rawWrites.milliseconds)
        return ([
            Figure("baseline: \(perPodLoad.name)", perPodLoad.value, .milliseconds, count: baselineLoads),
            Figure("attach, per pod (median of \(interfaces.count))", Statistics.median(attachTimes), .milliseconds, baseline: perPodLoad,
                   comparison: .faster, goal: .atMost(2), count: interfaces.count),
            Figure("baseline: \(raw.name)", raw.value, .milliseconds, count: cidrs),
            Figure("apply \(cidrs) CIDRs (parse JSON)", parse.milliseconds, .milliseconds),
            Figure("apply \(cidrs) CIDRs (validate, store, compile, swap)", apply.milliseconds, .milliseconds, baseline: raw),
            Figure("apply \(cidrs) CIDRs, total", parse.milliseconds + apply.milliseconds, .milliseconds, baseline: raw, goal: .atMost(50)),
            Figure("dry run of the same \(cidrs) CIDRs (validate, compile, compare)", dryRun.milliseconds, .milliseconds,
                   baseline: .init("the real apply (validate, store, compile, swap)", apply.milliseconds), goal: .atMost(1.2, .times)),
        ], raw)
    }

    /// A change of the same object (another port), parsed and applied while a keeper of spare tries
    /// runs on the root, as under `loader serve`: the new trie is a spare filled where it is.
    private func applyWithKeeper(root: PinRoot, raw: Figure.Baseline) throws -> Figure {
        let keeper = TrieKeeper(root: root)
        keeper.start()
        defer { keeper.stop() }
        for _ in 0..<500 where try Loader(root: root).datapath.spareCount() == 0 { usleep(10_000) }
        guard try Loader(root: root).datapath.spareCount() > 0 else { throw BenchmarkError("the keeper made no spare tries in 5 s") }
        let document = BenchPolicy(name: "bench", pods: ["pod0"], cidrs: BenchPolicy.hosts(cidrs), ports: [8443]).json
        let clock = ContinuousClock()
        let total = try clock.measure {
            let parsed = try PolicyDocumentParser.parse(document)
            _ = try Loader.openForChanges(root: root).apply(parsed)
        }
        return Figure("apply \(cidrs) CIDRs that change the pod's policy, total, a keeper of spare tries running", total.milliseconds,
                      .milliseconds, baseline: raw, goal: .atMost(4, .times))
    }
}
