import BPFKit
import Foundation
import Glibc
import HostKit
import Loader
import NodeNetwork

/// What netfence-cni adds to a pod's creation: ADD through Debian's ptp + host-local
/// chain with netfence-cni after it, beside the same chain without it, alternated
/// pod by pod on one throwaway node (each plugin executed as a runtime does).
public struct CNIBenchmark {
    public var samples = 30
    /// The netfence binary to run as netfence-cni.
    public let executable: String

    public init(executable: String) { self.executable = executable }

    public func run() throws -> [Figure] {
        guard FileManager.default.isExecutableFile(atPath: "\(CNIRuntime.debianPluginFolder)/ptp") else {
            throw BenchmarkError("\(CNIRuntime.debianPluginFolder)/ptp is missing: install Debian's containernetworking-plugins")
        }
        try BPFFilesystem.mountIfNeeded()
        let throwaway = try ThrowawayRoot(ThrowawayNode.pinRoot), root = throwaway.root
        let nodeName = "\(ThrowawayNode.namespace)-cni"
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nf-bench-cni-\(getpid())").path
        // The pods' namespaces and the node's, and the plugins' folder; also if a stop signal ends the run.
        let namespaces = Interruption.register {
            let named = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
            named.filter { $0.hasPrefix("\(nodeName)-p") }.forEach(IPRoute.deleteNamespace)
            IPRoute.deleteNamespace(nodeName)
        }
        let files = Interruption.register(removingFiles: [scratch])
        defer {
            throwaway.remove()
            namespaces.run()
            files.run()
        }
        try IPRoute.run(["netns", "add", nodeName])
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(scratch)/netfence-cni", withDestinationPath: executable)
        _ = try Loader.initialize(root: root, migrate: false)
        let node = try NetworkNamespace.named(nodeName)
        let ptp: [String: Any] = ["type": "ptp", "ipMasq": false,
                                  "ipam": ["type": "host-local", "ranges": [[["subnet": "198.18.0.0/16"]]], "dataDir": "\(scratch)/ipam"]]
        let chains = [
            try CNIRuntime(networkName: "bench", plugins: [ptp], node: node, binFolders: [scratch, CNIRuntime.debianPluginFolder]),
            try CNIRuntime(networkName: "bench", plugins: [ptp, ["type": "netfence-cni", "bpffsRoot": root.path]], node: node,
                           binFolders: [scratch, CNIRuntime.debianPluginFolder]),
        ]
        let clock = ContinuousClock()
        var adds: [[Double]] = [[], []], plugin: [Double] = [], harness: [Double] = []
        for sample in 0..<samples {
            // The harness enters the node namespace for each plugin (a runtime execs plugins directly): its cost, measured alike.
            harness.append(try clock.measure { _ = try ChildProcess.run("/usr/bin/nsenter", ["--net=\(node.path)", "/bin/true"]) }.milliseconds)
            for (index, chain) in chains.enumerated() {
                let name = "\(nodeName)-p\(sample)-\(index)"
                try IPRoute.run(["netns", "add", name])
                let arguments = CNIRuntime.podArguments(namespace: "bench", name: "pod\(sample)")
                var outcome: CNIRuntime.Outcome?
                let took = try clock.measure {
                    outcome = try chain.add(containerID: name, netns: "\(NetworkNamespace.namedFolder)/\(name)", arguments: arguments)
                }
                adds[index].append(took.milliseconds)
                if let seconds = outcome?.seconds["netfence-cni"] { plugin.append(seconds * 1000) }
                try chain.delete(containerID: name, netns: "\(NetworkNamespace.namedFolder)/\(name)", arguments: arguments, result: outcome?.result)
                IPRoute.deleteNamespace(name)
            }
        }
        guard try Loader(root: root).status().pods.isEmpty else {
            throw BenchmarkError("a pod stayed attached after its DEL; the figures would be wrong")
        }
        let alone = Figure.Baseline("ADD through ptp + host-local alone", Statistics.median(adds[0]))
        let entering = Statistics.median(harness)
        return [
            Figure("baseline: \(alone.name) (median of \(samples))", alone.value, .milliseconds, count: samples),
            Figure("ADD through ptp + host-local + netfence-cni (median of \(samples))", Statistics.median(adds[1]), .milliseconds,
                   baseline: alone, comparison: .over, count: samples),
            Figure("the harness entering the node namespace per plugin (nsenter /bin/true; a runtime does not)", entering, .milliseconds,
                   count: samples),
            Figure("netfence-cni's part: the chain's ADD over ptp alone, less the harness's nsenter", Statistics.median(adds[1]) - alone.value - entering,
                   .milliseconds, goal: .atMost(10), count: samples),
            Figure("netfence-cni's own process with its nsenter: start, lock, attach, result (median)", Statistics.median(plugin), .milliseconds,
                   count: plugin.count),
        ]
    }
}
