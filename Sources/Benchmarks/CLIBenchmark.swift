import BPFKit
import DatapathModel
import Foundation
import HostKit
import Loader
import LoaderService

/// A loader call as a node agent pays it: the real netfence processes (start-up
/// included) beside `bpftool version` started the same way in the same run, on a
/// throwaway node with three pod interfaces. Samples alternate between the commands.
public struct CLIBenchmark {
    public var samples = 30
    /// Changing applies back to back beside a server (the median and the slowest are printed).
    static let burst = 150
    /// The netfence binary whose processes are timed.
    public let executable: String

    public init(executable: String) { self.executable = executable }

    public func run() throws -> [Figure] {
        let bpftool = ["/usr/sbin/bpftool", "/usr/bin/bpftool"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let bpftool else { throw BenchmarkError("bpftool is missing: install Debian's bpftool (the baseline)") }
        // pod0 and pod1 share one object's policy (pod1 stays attached: pod0's trie is shared); pod2 has an object of its own.
        return try ThrowawayNode.run(interfaces: ["pod0", "pod1", "pod2"]) { root, sandbox in
            _ = try Loader.initialize(root: root, migrate: false)  // the loader (and its lock) go at once
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nf-bench-cli-\(getpid())").path
            let shared = scratch + "-shared.json", own = [scratch + "-a.json", scratch + "-b.json"]
            let removal = Interruption.register(removingFiles: [shared] + own)
            defer { removal.run() }
            try BenchPolicy(name: "shared", pods: ["pod0", "pod1"], cidrs: BenchPolicy.hosts(10)).json.write(toFile: shared, atomically: true, encoding: .utf8)
            for (file, port) in zip(own, [443, 8443]) {
                try BenchPolicy(name: "own", pods: ["pod2"], cidrs: BenchPolicy.hosts(10), ports: [port]).json.write(toFile: file, atomically: true, encoding: .utf8)
            }
            let rooted = ["--bpffs-root", root.path]
            func attach(_ pod: String) -> [String] {
                ["loader", "attach", "--pod", "bench/\(pod)", "--iface", pod, "--netns", sandbox.namespace.name] + rooted
            }
            func detach(_ pod: String) -> [String] { ["loader", "detach", "--pod", "bench/\(pod)"] + rooted }
            /// One process's wall time in ms; a failure fails the benchmark (its figure would be of an error path).
            func time(_ command: String, _ arguments: [String]) throws -> Double {
                let result = try ChildProcess.run(command, arguments, output: .discarded, timeout: 60)
                guard result.status == 0 else {
                    throw BenchmarkError("'\(([command] + arguments).joined(separator: " "))' failed (\(result.status)): \(result.output)")
                }
                return result.seconds * 1000
            }
            _ = try time(executable, attach("pod1"))
            _ = try time(executable, ["loader", "apply", "-f", shared] + rooted)
            var baseline: [Double] = [], version: [Double] = [], status: [Double] = [], sharedPair: [Double] = [], ownPair: [Double] = []
            var changing: [Double] = [], unchanged: [Double] = []
            for sample in 0..<samples {
                baseline.append(try time(bpftool, ["version"]))
                version.append(try time(executable, ["--version"]))
                sharedPair.append(try time(executable, attach("pod0")) + time(executable, detach("pod0")))
                ownPair.append(try time(executable, attach("pod2")) + time(executable, detach("pod2")))
                _ = try time(executable, attach("pod2"))
                changing.append(try time(executable, ["loader", "apply", "-f", own[sample % 2]] + rooted))
                unchanged.append(try time(executable, ["loader", "apply", "-f", own[sample % 2]] + rooted))
                status.append(try time(executable, ["loader", "status", "-o", "json"] + rooted))
                _ = try time(executable, detach("pod2"))
            }

            // The same calls through `loader serve`: one request each on a connection the agent keeps.
            let socket = "\(NSTemporaryDirectory())/nf-bench-serve-\(getpid()).sock"
            let server = try ChildProcess.start(executable, ["loader", "serve", "--socket", socket] + rooted)
            defer { server.stop() }
            var client: LoaderClient?
            for _ in 0..<500 where client == nil {
                client = try? LoaderClient(socketPath: socket)
                if client == nil { usleep(10_000) }
            }
            guard let client else { throw BenchmarkError("loader serve did not listen on \(socket)") }
            /// One request's wall time in ms, answered and exited 0.
            func request(_ arguments: [String], input: String? = nil) throws -> Double {
                let clock = ContinuousClock()
                var response: LoaderResponse?
                let elapsed = try clock.measure { response = try client.run(LoaderRequest(args: arguments, input: input)) }
                guard response?.exitCode == 0 else { throw BenchmarkError("'\(arguments.joined(separator: " "))' through serve: \(response?.stderr ?? "")") }
                return elapsed.milliseconds
            }
            let ownText = try own.map { try String(contentsOfFile: $0, encoding: .utf8) }
            func served(_ words: [String]) -> [String] { Array(words.prefix { $0 != "--bpffs-root" }) }
            var servedPair: [Double] = [], servedOwnPair: [Double] = [], servedChanging: [Double] = [], servedUnchanged: [Double] = []
            for sample in 0..<samples {
                servedPair.append(try request(served(attach("pod0"))) + request(served(detach("pod0"))))
                servedOwnPair.append(try request(served(attach("pod2"))) + request(served(detach("pod2"))))
                _ = try request(served(attach("pod2")))
                servedChanging.append(try request(["loader", "apply", "-f", "-"], input: ownText[sample % 2]))
                servedUnchanged.append(try request(["loader", "apply", "-f", "-"], input: ownText[sample % 2]))
                _ = try request(served(detach("pod2")))
            }
            // Commands as processes while the server's keeper runs: they fill its spares and leave it what they let go.
            var keptChanging: [Double] = []
            _ = try request(served(attach("pod2")))
            // Back to back, as an agent's burst: enough changes to empty spares a keeper could not refill in time.
            for sample in 0..<max(samples, Self.burst) { keptChanging.append(try time(executable, ["loader", "apply", "-f", own[sample % 2]] + rooted)) }
            _ = try request(served(detach("pod2")))
            // The price of tcx links (what `init --attach tcx` saves each packet, docs/loader.md): a link's
            // creation waits for an RCU grace period in the kernel, two per attach. No goal: the choice is the operator's.
            var tcxPair: [Double] = []
            // tc-then-tcx: an attach through filters, and what loader serve's mover does once the pod stayed
            // (links made without the root's lock, then pinned under it), then a detach of the pod on links.
            var thenPair: [Double] = [], making: [Double] = [], adopting: [Double] = [], linkedDetach: [Double] = []
            if TCAttachments.tcxAvailable {
                _ = try time(executable, ["loader", "init", "--attach", "tcx"] + rooted)
                for _ in 0..<samples { tcxPair.append(try time(executable, attach("pod0")) + time(executable, detach("pod0"))) }
                _ = try time(executable, ["loader", "init", "--attach", "tc-then-tcx"] + rooted)
                let clock = ContinuousClock(), pod0 = PodReference(namespace: "bench", name: "pod0")
                for _ in 0..<samples { thenPair.append(try time(executable, attach("pod0")) + time(executable, detach("pod0"))) }
                for _ in 0..<samples {
                    _ = try time(executable, attach("pod0"))
                    let reader = try Loader(root: root)
                    guard let (podID, registration) = try reader.state.pod(pod0) else { throw BenchmarkError("pod0 is not attached") }
                    var links: [TCXLink] = []
                    making.append(try clock.measure { links = try reader.makeLinks(podID: podID, for: registration) }.milliseconds)
                    adopting.append(try clock.measure {
                        guard try Loader.openForChanges(root: root).adoptLinks(links, podID: podID, for: registration) else {
                            throw BenchmarkError("pod0's links were not adopted")
                        }
                    }.milliseconds)
                    linkedDetach.append(try time(executable, detach("pod0")))
                }
            }
            let tool = Figure.Baseline("bpftool version, as a process", Statistics.median(baseline))
            func figure(_ name: String, _ samples: [Double], goal: Goal? = .atMost(10)) -> Figure {
                Figure(name, Statistics.median(samples), .milliseconds, baseline: tool, comparison: .value, goal: goal, count: samples.count)
            }
            return [
                Figure("baseline: \(tool.name) (median of \(samples))", tool.value, .milliseconds, count: samples),
                Figure("netfence --version, as a process", Statistics.median(version), .milliseconds, baseline: tool,
                       goal: .atMost(3, .times), count: samples),
                Figure("netfence loader status -o json (three pods), as a process", Statistics.median(status), .milliseconds, baseline: tool,
                       count: samples),
                figure("netfence loader attach + detach, the pod's policy shared with a running pod", sharedPair),
                figure("netfence loader attach + detach, a policy of its own (a spare filled or a trie built, then let go)", ownPair),
                figure("netfence loader apply of one small object (10 CIDRs) that changes a pod's policy", changing),
                figure("netfence loader apply of the same object again (an agent's re-apply)", unchanged),
                figure("through loader serve: attach + detach, the pod's policy shared with a running pod", servedPair),
                figure("through loader serve: attach + detach, a policy of its own (a spare filled, then let go)", servedOwnPair),
                figure("through loader serve: apply of one small object that changes a pod's policy", servedChanging),
                figure("through loader serve: apply of the same object again", servedUnchanged),
                figure("netfence loader apply that changes a pod's policy, as a process while loader serve keeps spare tries", keptChanging),
                Figure("the slowest of those \(keptChanging.count) changing applies back to back", keptChanging.max() ?? 0, .milliseconds, baseline: tool,
                       comparison: .value, goal: .atMost(10), count: 1),
            ] + (tcxPair.isEmpty ? [] : [
                figure("netfence loader attach + detach through tcx links (after loader init --attach tcx), the pod's policy shared", tcxPair, goal: nil),
                figure("netfence loader attach + detach after loader init --attach tc-then-tcx (a filter until loader serve moves the pod)", thenPair),
                figure("loader serve moving a pod that stayed onto tcx links: its two links made, without the root's lock", making, goal: nil),
                figure("loader serve moving a pod that stayed onto tcx links: pinned and the filters removed, the root's lock held", adopting),
                figure("netfence loader detach of a pod serve moved onto tcx links (two links detached, a grace period each)", linkedDetach,
                       goal: nil),
            ])
        }
    }
}
