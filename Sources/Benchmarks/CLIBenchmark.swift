import BPFKit
import Foundation
import HostKit
import Loader

/// A loader call as a node agent pays it: the real netfence processes (start-up
/// included) beside `bpftool version` started the same way in the same run, on a
/// throwaway node with one pod interface. Samples alternate between the commands.
public struct CLIBenchmark {
    public var samples = 30
    /// The netfence binary whose processes are timed.
    public let executable: String

    public init(executable: String) { self.executable = executable }

    public func run() throws -> [Figure] {
        let bpftool = ["/usr/sbin/bpftool", "/usr/bin/bpftool"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let bpftool else { throw BenchmarkError("bpftool is missing: install Debian's bpftool (the baseline)") }
        return try ThrowawayNode.run(interfaces: ["pod0"]) { root, sandbox in
            _ = try Loader.initialize(root: root, migrate: false)
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nf-bench-cli-\(getpid()).json").path
            try LoaderBenchmark.policy(cidrs: 10).write(toFile: scratch, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let rooted = ["--bpffs-root", root.path]
            let attach = ["loader", "attach", "--pod", "bench/pod0", "--iface", "pod0", "--netns", sandbox.namespace.name] + rooted
            /// One process's wall time in ms; a failure fails the benchmark (its figure would be of an error path).
            func time(_ command: String, _ arguments: [String]) throws -> Double {
                let result = try ChildProcess.run(command, arguments, output: .discarded, timeout: 60)
                guard result.status == 0 else {
                    throw BenchmarkError("'\(([command] + arguments).joined(separator: " "))' failed (\(result.status)): \(result.output)")
                }
                return result.seconds * 1000
            }
            var baseline: [Double] = [], version: [Double] = [], status: [Double] = [], pair: [Double] = [], apply: [Double] = []
            for _ in 0..<samples {
                baseline.append(try time(bpftool, ["version"]))
                version.append(try time(executable, ["--version"]))
                pair.append(try time(executable, attach) + time(executable, ["loader", "detach", "--pod", "bench/pod0"] + rooted))
                _ = try time(executable, attach)
                apply.append(try time(executable, ["loader", "apply", "-f", scratch] + rooted))
                status.append(try time(executable, ["loader", "status", "-o", "json"] + rooted))
                _ = try time(executable, ["loader", "detach", "--pod", "bench/pod0"] + rooted)
            }
            let tool = Figure.Baseline("bpftool version, as a process", Statistics.median(baseline))
            return [
                Figure("baseline: \(tool.name) (median of \(samples))", tool.value, .milliseconds, count: samples),
                Figure("netfence --version, as a process", Statistics.median(version), .milliseconds, baseline: tool,
                       goal: .atMost(3, .times), count: samples),
                Figure("netfence loader status -o json (one pod), as a process", Statistics.median(status), .milliseconds, baseline: tool,
                       count: samples),
                Figure("netfence loader attach + detach, as two processes", Statistics.median(pair), .milliseconds, baseline: tool,
                       comparison: .value, goal: .atMost(10), count: samples),
                Figure("netfence loader apply of one small object (10 CIDRs), as a process", Statistics.median(apply), .milliseconds,
                       baseline: tool, comparison: .value, goal: .atMost(10), count: samples),
            ]
        }
    }
}
