import Benchmarks
import BPFKit
import Foundation
import HostKit
import NodeNetwork
import Testing
import TestSupport

@testable import netfence

@Suite struct BenchCommandTests {
    /// `netfence bench WORDS -o json`: its rows, and the run (its process id names what it made);
    /// a failing run fails the test with its stderr.
    static func bench(_ words: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ([[String: Any]], CommandResult) {
        let result = try NetfenceBinary.run(["bench"] + words + ["-o", "json"])
        #expect(result.status == 0, "stderr: \(result.standardError)", sourceLocation: sourceLocation)
        return (try jsonArray(result.standardOutput), result)
    }

    /// A short run of `bench events`: every reader took every event, in JSON for
    /// scripts, each against the raw drain of the same run (the watcher against the
    /// consumer's JSON Lines), and the command removed its namespace and pins.
    @Test func benchEventsMeasuresEveryReaderAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["events", "--events", "20000"])
        #expect(rows.map { $0["name"] as? String } == ["baseline: raw drain (no decoding)", "decoded + attributed + JSON Lines to /dev/null",
                                                       "decoded + attributed + pcapng (128-byte captures) to /dev/null",
                                                       "a watcher: decoded + attributed + JSON Lines (each record copied and checked)"])
        for row in rows {
            #expect((row["count"] as? Int ?? 0) >= 20_000)
            #expect((row["value"] as? Double ?? 0) > 0 && row["unit"] as? String == "/s")
        }
        let watcher = try #require(rows.last?["baseline"] as? [String: Any])
        #expect(watcher["value"] as? Double == rows[1]["value"] as? Double && rows.last?["goal"] == nil, "a watcher beside the consumer, no goal")
        for (decoded, limit) in zip(rows.dropFirst(), [1_860_000.0, 500_000]) {
            let baseline = try #require(decoded["baseline"] as? [String: Any])
            #expect(baseline["value"] as? Double == rows.first?["value"] as? Double, "read against the raw drain of the same run")
            #expect(decoded["comparison"] as? String == "times")
            let ratio = (decoded["value"] as? Double ?? 0) / (baseline["value"] as? Double ?? 1)
            #expect(abs((decoded["compared"] as? Double ?? 0) - ratio) < 1e-9)
            let goal = try #require(decoded["goal"] as? [String: Any])
            #expect(goal["bound"] as? String == "atLeast" && goal["limit"] as? Double == limit && goal["comparison"] as? String == "value")
            #expect(decoded["met"] as? Bool == ((decoded["value"] as? Double ?? 0) >= limit))
        }
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
    }

    /// A short run of `bench cni`: both chains created and deleted every pod, the plugin's
    /// part is read against ptp alone, and nothing is left (pins, namespaces).
    @Test func benchCNIMeasuresTheChainWithAndWithoutNetfence() throws {
        guard Privileges.require(), Privileges.tools(["\(CNIRuntime.debianPluginFolder)/ptp"], from: "containernetworking-plugins") else { return }
        let (rows, result) = try Self.bench(["cni", "--samples", "3"])
        #expect(rows.count == 5 && rows.allSatisfy { $0["value"] is Double && $0["unit"] as? String == "ms" }, "\(rows)")
        let chain = try #require(rows.dropFirst().first)
        #expect(chain["comparison"] as? String == "over")
        let part = try #require(rows.dropFirst(3).first)
        let value = (chain["value"] as? Double ?? 0) - (rows[0]["value"] as? Double ?? 0) - (rows[2]["value"] as? Double ?? 0)
        #expect(abs((part["value"] as? Double ?? 0) - value) < 1e-6, "the chain over ptp alone, less the harness")
        let goal = try #require(part["goal"] as? [String: Any])
        #expect(goal["bound"] as? String == "atMost" && goal["limit"] as? Double == 10)
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
        #expect(!left.contains { $0.hasPrefix("nfbench-\(pid)") }, "namespaces removed: \(left)")
    }

    /// A small run of `bench loader`: every row, the last a change applied with a keeper of spare
    /// tries running (which fails the run if the keeper made none), read against the raw trie writes.
    @Test func benchLoaderAppliesWithAndWithoutAKeeperOfSpareTries() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["loader", "--pods", "3"])
        #expect(rows.count == 8 && rows.allSatisfy { ($0["value"] as? Double ?? 0) > 0 }, "\(rows)")
        let kept = try #require(rows.last)
        #expect((kept["name"] as? String)?.contains("keeper of spare tries") == true)
        #expect((kept["baseline"] as? [String: Any])?["name"] as? String == "1000 raw trie writes")
        #expect((kept["goal"] as? [String: Any])?["limit"] as? Double == 4)
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(result.processID)"), "pins removed")
    }

    /// A short run of `bench cli`: every command ran as a process (a failing one fails the run),
    /// each read against bpftool version from the same run, the throwaway node removed.
    @Test func benchCLITimesTheRealProcessesBesideBpftool() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["cli", "--samples", "3"])
        #expect(rows.count == (TCAttachments.tcxAvailable ? 18 : 13) && rows.allSatisfy { ($0["value"] as? Double ?? 0) > 0 && $0["unit"] as? String == "ms" }, "\(rows)")
        let baseline = rows.first?["value"] as? Double
        #expect(rows.dropFirst().allSatisfy { ($0["baseline"] as? [String: Any])?["value"] as? Double == baseline })
        let version = try #require(rows.dropFirst().first?["goal"] as? [String: Any])
        #expect(version["comparison"] as? String == "times" && version["limit"] as? Double == 3)
        if TCAttachments.tcxAvailable {
            // Under tc-then-tcx an attach pays a filter's price, and a server's move holds the root's lock briefly.
            let bounded = rows.filter { ($0["name"] as? String ?? "").contains("tc-then-tcx") || ($0["name"] as? String ?? "").contains("lock held") }
            #expect(bounded.count == 2 && bounded.allSatisfy { ($0["goal"] as? [String: Any])?["limit"] as? Double == 10 }, "\(bounded)")
        }
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
    }

    /// A one-pass run of `bench datapath`: every case ran (an events case whose ring held other
    /// events than its level asks for, or a capture case without its bytes, fails the run), each
    /// events case read against the same datapath with events off, and the sandbox removed.
    @Test func benchDatapathMeasuresEveryPathWithAndWithoutEvents() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["datapath", "--passes", "1"])
        let names = rows.compactMap { $0["name"] as? String }
        for path in ["new denied flow", "new allowed flow"] {
            for level in ["deny", "all"] {
                let row = try #require(rows.first { $0["name"] as? String == "\(path) with events at level \(level), ns over floor, 10,000 prefixes" },
                                       "\(names)")
                #expect((row["baseline"] as? [String: Any])?["name"] as? String == "the same with events off")
                #expect((row["goal"] as? [String: Any])?["limit"] as? Double == 1.15)
            }
        }
        #expect(names.contains("new denied flow, its event with a 128-byte capture, ns over floor, 10,000 prefixes"))
        let established = rows.filter { ($0["name"] as? String ?? "").hasPrefix("established flow, ") }
        #expect(established.count == 3 && established.allSatisfy { ($0["goal"] as? [String: Any])?["limit"] as? Double == 70 }, "\(established)")
        let walks = rows.filter { $0["unit"] as? String == "insns" }
        #expect(walks.compactMap { $0["name"] as? String } == ["nf_to_pod", "nf_from_pod"].map { "instructions the verifier processed loading \($0)" })
        #expect(walks.allSatisfy { ($0["value"] as? Double ?? 0) > 0 && ($0["baseline"] as? [String: Any])?["value"] as? Double == 1_000_000 }, "\(walks)")
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(result.processID)"), "namespace removed")
    }

    /// A short run of `bench scale`: the policy over every pod is one trie, as large as one pod's,
    /// and the command removed its namespace and pins.
    @Test func benchScaleSharesOneTrieAmongEveryPodAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["scale", "--pods", "6", "--cidrs", "2500", "--rounds", "1"])
        #expect(rows.map { $0["unit"] as? String } == ["ms", "ms", "MiB", "MiB"], "\(rows)")
        #expect(rows[3]["name"] as? String == "kernel memory of the tries, 6 pods (1 trie)" && rows[3]["count"] as? Int == 1)
        #expect(rows[3]["compared"] as? Double == 1.0 && (rows[2]["value"] as? Double ?? 0) > 0, "the same one trie: \(rows)")
        let goal = try #require(rows[1]["goal"] as? [String: Any])
        #expect(goal["bound"] as? String == "atMost" && goal["limit"] as? Double == 2 && rows[1]["comparison"] as? String == "times")
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
    }

    /// A short run of `bench traffic`: every case moved real bytes and round trips between the pods, one pair
    /// alone (no goals) and two pairs side by side (the goals, on the netfence cases: the median round's
    /// flow beside the other pair's at the same time, netfence attached through filters or on the tcx links
    /// `loader serve` moves pods onto under `loader init --attach tc-then-tcx`), and nothing is left behind.
    @Test func benchTrafficMeasuresRealTrafficWithAndWithoutNetfence() throws {
        guard Privileges.require(), Privileges.tools(["/usr/bin/iperf3", "/usr/bin/sockperf"], from: "iperf3 or sockperf") else { return }
        let (rows, result) = try Self.bench(["traffic", "--seconds", "1", "--rounds", "1", "--side-by-side-rounds", "2"])
        #expect(rows.count == 51 && rows.allSatisfy { ($0["value"] as? Double ?? 0) > 0 }, "\(rows)")
        #expect(rows.prefix(4).map { $0["unit"] as? String } == ["Gbit/s", "/s", "µs", "µs"])
        #expect(rows.prefix(20).allSatisfy { $0["goal"] == nil }, "one pair alone carries no goal")
        let sideBySide = Array(rows.dropLast().suffix(30)), programs = try #require(rows.last)
        let emptyProgram = try #require(programs["baseline"] as? [String: Any])
        let name = programs["name"] as? String ?? "", unit = programs["unit"] as? String, comparison = programs["comparison"] as? String
        let netfenceNanoseconds = programs["value"] as? Double ?? 0, emptyNanoseconds = emptyProgram["value"] as? Double ?? .infinity
        #expect(name.hasPrefix("ns per packet in netfence's programs") && unit == "ns" && comparison == "over"
                    && netfenceNanoseconds > emptyNanoseconds,
                "the kernel timed netfence's programs beside the empty one, in the same traffic: \(programs)")
        #expect(sideBySide.allSatisfy { ($0["name"] as? String ?? "").contains("side by side") && ($0["baseline"] as? [String: Any])?["value"] as? Double ?? 0 > 0 },
                "\(sideBySide)")
        #expect(sideBySide.prefix(3).allSatisfy { $0["goal"] == nil }, "the control (no program on either pair) has no goal")
        let (emptyHook, overEmptyHook, emptyThroughTCX, onLinks) = (sideBySide[3..<6], sideBySide[15..<18], sideBySide[18..<21], sideBySide.suffix(9))
        #expect(emptyHook.allSatisfy { ($0["name"] as? String ?? "").contains("an empty tc program") && $0["goal"] == nil }, "\(emptyHook)")
        #expect(overEmptyHook.allSatisfy { $0["goal"] == nil
            && (($0["baseline"] as? [String: Any])?["name"] as? String ?? "").contains("an empty tc program on its hooks") },
                "netfence's programs beside the hook's own cost: \(overEmptyHook)")
        #expect(emptyThroughTCX.allSatisfy { ($0["name"] as? String ?? "").contains("through tcx links") && $0["goal"] == nil },
                "the empty program through tcx: the hook's own cost: \(emptyThroughTCX)")
        #expect(onLinks.allSatisfy { ($0["name"] as? String ?? "").contains("moved onto tcx links") }, "\(onLinks)")
        for row in sideBySide[6..<15] + onLinks {
            let goal = try #require(row["goal"] as? [String: Any])
            #expect(row["comparison"] as? String == "times" && [0.97, 1.05].contains(goal["limit"] as? Double ?? 0) && row["count"] as? Int == 2, "\(row)")
        }
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-traffic-\(pid)"), "pins removed")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
        #expect(!left.contains { $0.hasPrefix("nfbt\(Int(pid)! % 100_000)") }, "namespaces removed: \(left)")
        #expect(try ChildProcess.run("/usr/bin/pgrep", ["-f", "sockperf server|iperf3 -s"]).status != 0, "servers stopped")
    }

    /// A benchmark stopped half-way (SIGINT as Ctrl-C sends it, SIGTERM as `kill` does, SIGHUP as a
    /// closed terminal does) removes what
    /// it made before it ends: its pods' namespaces, its pin root and the servers in the pods. One
    /// line on stderr says so (JSON under `-o json`); the status is 128 + the signal.
    @Test(arguments: [SIGINT, SIGTERM, SIGHUP]) func aBenchStoppedHalfWayRemovesWhatItMade(signal: Int32) throws {
        guard Privileges.require(), Privileges.tools(["/usr/bin/iperf3", "/usr/bin/sockperf"], from: "iperf3 or sockperf") else { return }
        let json = signal == SIGTERM
        let bench = Process(), errors = Pipe()
        bench.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        bench.arguments = ["bench", "traffic", "--seconds", "2"] + (json ? ["-o", "json"] : [])
        (bench.standardOutput, bench.standardError) = (FileHandle.nullDevice, errors)
        try bench.run()
        let pid = bench.processIdentifier
        let (prefix, root) = ("nfbt\(pid % 100_000)", "\(BPFFilesystem.defaultMountPoint)/netfence-bench-traffic-\(pid)")
        // Under way: both servers listening in each pair's server pod, the datapath loaded.
        var servers: [pid_t] = []
        let clock = ContinuousClock(), deadline = clock.now + .seconds(60)
        while servers.count < 4 || !FileManager.default.fileExists(atPath: root), clock.now < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            servers = ["p1", "p3"].flatMap { pod in
                ((try? IPRoute.run(["netns", "pids", "\(prefix)-\(pod)"])) ?? "").split(separator: "\n").compactMap { pid_t($0) }
            }
        }
        #expect(servers.count == 4 && FileManager.default.fileExists(atPath: root), "the bench made its node: \(servers)")
        Thread.sleep(forTimeInterval: 1)
        kill(pid, signal)
        while bench.isRunning, clock.now < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if bench.isRunning { kill(pid, SIGKILL) }
        bench.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(bench.terminationStatus == 128 + signal, "\(stderr)")
        let name = [SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP"][signal]!
        let said = "stopped by \(name); removed the namespaces, pins and processes 'netfence bench traffic' had made"
        #expect(stderr == (json ? "{\"error\":\"\(said)\",\"exitCode\":\(128 + signal)}\n" : "error: \(said)\n"), "\(stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
        #expect(!left.contains { $0.hasPrefix("\(prefix)-") }, "namespaces removed: \(left)")
        #expect(!FileManager.default.fileExists(atPath: root), "pins removed")
        #expect(servers.allSatisfy { kill($0, 0) != 0 }, "servers stopped")
    }

    /// A short run of `bench dns`: NOERROR answers/s and latency through the proxy beside dnsmasq
    /// straight and beside dnsdist, the latency once more with every process on one CPU (each forwarder's
    /// own share), the share of other answers (none through the proxy: the load stays within its
    /// per-pod bound of waiting queries), the machine's idle CPU in each case, the CPU each answer costs
    /// dnsmasq, the proxy and dnsdist, the goals (the rate's beside dnsdist), and nothing left behind.
    /// (Without dnsdist, the bench leaves its rows out with a warning; scripts/install-dependencies installs it.)
    @Test func benchDNSMeasuresTheProxyBesideItsUpstream() throws {
        guard Privileges.require(), Privileges.tools(["/usr/bin/dnsperf", "/usr/sbin/dnsmasq", "/usr/bin/dnsdist"], from: "dnsperf, dnsmasq or dnsdist") else {
            return
        }
        let (rows, result) = try Self.bench(["dns", "--seconds", "1", "--passes", "1"])
        let percents = rows.filter { ($0["unit"] as? String) == "%" }, measured = rows.filter { ($0["unit"] as? String) != "%" }
        #expect(rows.count == 21 && measured.allSatisfy { ($0["value"] as? Double ?? 0) > 0 }, "\(rows)")
        let cases = ["straight to dnsmasq", "through netfence dns proxy", "through dnsdist"]
        #expect(percents.map { $0["name"] as? String ?? "" } == cases.map { "answers not NOERROR \($0)" } + cases.map { "CPU idle on this machine \($0)" })
        #expect(percents.prefix(3).allSatisfy { ($0["value"] as? Double ?? 100) < 1 }, "\(percents)")
        #expect(percents.suffix(3).allSatisfy { ($0["value"] as? Double ?? -1) >= 0 && ($0["value"] as? Double ?? 101) <= 100 }, "\(percents)")
        let peer = rows.suffix(6).map { ($0["name"] as? String ?? "", ($0["baseline"] as? [String: Any])?["name"] as? String ?? "") }
        #expect(peer.map(\.0) == ["answers/s through dnsdist", "answers/s through netfence dns proxy", "p50 through dnsdist",
                                  "p50 through dnsdist, all on one CPU", "baseline: CPU per answer in dnsdist, forwarding",
                                  "CPU per answer in netfence dns proxy, forwarding"], "\(peer)")
        #expect(peer.map(\.1) == ["answers/s straight to dnsmasq", "answers/s through dnsdist", "p50 straight to dnsmasq",
                                  "p50 straight to dnsmasq, all on one CPU", "", "CPU per answer in dnsdist, forwarding"], "\(peer)")
        let goals = rows.compactMap { row in (row["goal"] as? [String: Any]).map { (row["name"] as? String ?? "", $0["limit"] as? Double, $0["comparison"] as? String) } }
        #expect(goals.map(\.0) == ["p50 through netfence dns proxy", "p50 through netfence dns proxy, all on one CPU",
                                   "answers/s through netfence dns proxy"])
        #expect(goals.map(\.1) == [0.05, 0.05, 0.8] && goals.map(\.2) == ["over", "over", "times"])
        let rate = try #require(rows.first { ($0["goal"] as? [String: Any])?["limit"] as? Double == 0.8 })
        #expect((rate["baseline"] as? [String: Any])?["name"] as? String == "answers/s through dnsdist", "the rate's goal is read beside dnsdist")
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-dns-\(pid)"), "pins removed")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
        #expect(!left.contains { $0.hasPrefix("nfbd\(Int(pid)! % 100_000)") }, "namespaces removed: \(left)")
        // The run's dnsmasq reads its configuration from, and its proxy pins under, netfence-bench-dns-PID: any
        // dnsmasq would also match the DNS proxy tests' own, which run beside this suite.
        #expect(try ChildProcess.run("/usr/bin/pgrep", ["-f", "netfence-bench-dns-\(pid)\\b"]).status != 0, "servers stopped")
    }

    /// A ratio within half a hundredth of its goal's limit shows the third decimal that decides it: a row never
    /// reads "0.97× ≥ 0.97× (missed)". Further away, two decimals.
    @Test func aRatioNearItsGoalShowsTheDecimalThatDecidesIt() throws {
        let near = Figure("transactions", 57_273, .perSecond, baseline: .init("beside", 59_209), goal: .atLeast(0.97, .times))
        let far = Figure("transactions", 58_295, .perSecond, baseline: .init("beside", 59_005), goal: .atLeast(0.97, .times))
        let noGoal = Figure("transactions", 57_273, .perSecond, baseline: .init("beside", 59_209))
        #expect(FigureTable.compared(try #require(near.compared(.times)), near) == "0.967×" && FigureTable.goal(near) == "≥ 0.97× (missed)")
        #expect(FigureTable.compared(try #require(far.compared(.times)), far) == "0.99×" && FigureTable.goal(far) == "≥ 0.97× (met)")
        #expect(FigureTable.compared(try #require(noGoal.compared(.times)), noGoal) == "0.97×")
    }

    /// Side-by-side runs of no length, or a thousand of them, are refused before anything is built.
    @Test(arguments: [["--side-by-side-seconds", "0"], ["--side-by-side-rounds", "1000"]])
    func benchTrafficRefusesRoundsOutOfRange(words: [String]) throws {
        let result = try NetfenceBinary.run(["bench", "traffic"] + words)
        #expect(result.status == 64)
        #expect(result.standardError.contains("\(words[0]) must be between 1 and"), "\(result.standardError)")
    }

    @Test func benchEventsRefusesATooSmallRun() throws {
        let result = try NetfenceBinary.run(["bench", "events", "--events", "10"])
        #expect(result.status == 64)
        #expect(result.standardError.contains("--events must be between 10000 and 100000000"))
    }

    /// A short run of `bench conntrack`: every reader ran over the filled table (each case
    /// fails the run if its process fails or the raw read misses entries), ratios against
    /// the raw read and bpftool's JSON, and nothing left behind.
    @Test func benchConntrackTimesEveryReaderAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let (rows, result) = try Self.bench(["conntrack", "--entries", "5000", "--passes", "1"])
        #expect(rows.count == 6)
        #expect(rows.first?["name"] as? String == "baseline: raw batch read (no formatting)")
        let listing = try #require(rows.first { $0["name"] as? String == "netfence conntrack list -o json > /dev/null" })
        #expect((listing["goal"] as? [String: Any])?["limit"] as? Double == 1.5 && listing["comparison"] as? String == "times")
        let againstBpftool = try #require(rows.first { $0["name"] as? String == "netfence conntrack list -o json, against bpftool -j" })
        #expect((againstBpftool["goal"] as? [String: Any])?["limit"] as? Double == 15 && againstBpftool["comparison"] as? String == "faster")
        let bpftoolRow = againstBpftool["baseline"] as? [String: Any], bpftoolName = bpftoolRow?["name"] as? String ?? ""
        #expect(bpftoolName.hasPrefix("bpftool -j map dump id "))
        for row in rows { #expect((row["value"] as? Double ?? 0) > 0 && row["unit"] as? String == "s" && row["count"] as? Int == 5000) }
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
    }

    @Test func benchConntrackRefusesATableLargerThanTheMap() throws {
        let result = try NetfenceBinary.run(["bench", "conntrack", "--entries", "600000"])
        #expect(result.status == 64)
        #expect(result.standardError.contains("--entries must be between 1000 and 500000"))
    }
}
