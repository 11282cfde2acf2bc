import BPFKit
import Datapath
import DatapathModel
import Foundation
import PolicyInput

/// Attach and apply times of the loader, beside what attaching costs when each
/// pod loads its own programs (the AWS agent's way: a verifier run per pod).
public struct LoaderBenchmark {
    public struct Result: Sendable, Encodable {
        public let name: String
        public let milliseconds: Double
        /// The goal, when the issue names one.
        public let goalMilliseconds: Double?
    }

    public var cidrs = 1_000
    /// Pods that load their own programs for the baseline (each takes a verifier run).
    public var baselineLoads = 5

    public init() {}

    /// Attaches one pod per entry of `interfaces` (all in `netns`) under a fresh
    /// loader at `root`, then applies a policy of `cidrs` CIDRs to the first.
    public func run(root: PinRoot, interfaces: [String], netns: String) throws -> [Result] {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        let clock = ContinuousClock()
        var attachTimes: [Double] = []
        for (index, interface) in interfaces.enumerated() {
            let elapsed = try clock.measure {
                _ = try loader.attach(namespace: "bench", name: "pod\(index)", interface: interface, netns: netns,
                                      defaults: [.ingress: .allow, .egress: .allow])
            }
            attachTimes.append(elapsed.milliseconds)
        }
        var baselineTimes: [Double] = []
        for _ in 0..<baselineLoads {
            baselineTimes.append(try clock.measure { _ = try Datapath() }.milliseconds)
        }

        let document = Self.policy(cidrs: cidrs)
        var parsed = ParsedPolicies()
        let parse = try clock.measure { parsed = try PolicyDocumentParser.parse(document) }
        let apply = try clock.measure { _ = try loader.apply(parsed) }
        let rules = (0..<cidrs).map { PolicyRule(ruleID: 1, peer: IPPrefix(address: Self.address($0), length: 128)) }
        let compiled = try PolicyCompiler.compile(rules)
        let rawWrites = try clock.measure { _ = try loader.datapath.makeTrie(compiled) }
        return [
            Result(name: "attach, per pod (median of \(interfaces.count))", milliseconds: median(attachTimes), goalMilliseconds: 2),
            Result(name: "baseline: load programs per pod (median of \(baselineLoads))", milliseconds: median(baselineTimes), goalMilliseconds: nil),
            Result(name: "apply \(cidrs) CIDRs (parse JSON)", milliseconds: parse.milliseconds, goalMilliseconds: nil),
            Result(name: "apply \(cidrs) CIDRs (validate, store, compile, swap)", milliseconds: apply.milliseconds, goalMilliseconds: nil),
            Result(name: "apply \(cidrs) CIDRs, total", milliseconds: parse.milliseconds + apply.milliseconds, goalMilliseconds: 50),
            Result(name: "baseline: \(cidrs) raw trie writes", milliseconds: rawWrites.milliseconds, goalMilliseconds: nil),
        ]
    }

    /// A PolicyEndpoint for `bench/pod0` allowing TCP 443 from `cidrs` host prefixes, as kubectl prints JSON.
    static func policy(cidrs: Int) -> String {
        let rules = (0..<cidrs).map { "{\"cidr\": \"\(address($0))/32\", \"ports\": [{\"protocol\": \"TCP\", \"port\": 443}]}" }
        return """
        {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "PolicyEndpoint",
         "metadata": {"name": "bench", "namespace": "bench"},
         "spec": {"policyRef": {"name": "bench", "namespace": "bench"}, "podIsolation": ["Ingress"],
                  "podSelectorEndpoints": [{"name": "pod0", "namespace": "bench"}],
                  "ingress": [\(rules.joined(separator: ","))]}}
        """
    }

    static func address(_ index: Int) -> IPAddress {
        IPAddress(ipv4: [198, 19, UInt8(index >> 8 & 0xff), UInt8(index & 0xff)])
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
