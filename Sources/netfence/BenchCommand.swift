import BPFKit
import CommandTree
import Datapath
import DNSProxy
import Events
import Foundation
import HostKit
import Inspection
import Loader
import NodeNetwork

/// `netfence bench`: measurements that print beside their baseline from the same run.
struct BenchCommand: Command {
    static let configuration = CommandConfiguration(
        name: "bench",
        abstract: "Measure netfence on this machine, each figure beside its baseline from the same run.",
        subcommands: [BenchDatapathCommand.self, BenchLoaderCommand.self, BenchEventsCommand.self, BenchConntrackCommand.self,
                      BenchDNSCommand.self])

    init(parsed: ParsedArguments) {}
}

/// `netfence bench datapath`: ns per packet for the datapath's paths.
struct BenchDatapathCommand: Command {
    static let configuration = CommandConfiguration(
        name: "datapath",
        abstract: "ns per packet through BPF_PROG_TEST_RUN: established, new allowed and new denied flows.",
        discussion: """
            Loads the datapath with 10, 10k and 60k prefixes in a pod's egress trie and runs crafted TCP packets \
            through it with BPF_PROG_TEST_RUN, beside an empty tc program measured in the same run (the floor). \
            Repeated cases report the minimum over passes of the median of rounds; new allowed flows are sampled \
            one run each, on distinct flows. Every case is interleaved with the empty program measured the same way, \
            and OVER FLOOR is against that adjacent floor. Events are off, as on a node that does not log. Runs \
            inside a throwaway network namespace; takes about a minute.
            """)

    static let passes = Option<Int>(long: "passes", help: "Passes per case; the minimum of their medians is reported.", default: 5)
    static let arguments = [passes.definition]

    let passes: Int
    init(parsed: ParsedArguments) { passes = parsed[Self.passes] }

    func validate() throws {
        if !(1...20).contains(passes) { throw UsageError("--passes must be between 1 and 20") }
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        let sandbox = try SandboxInterfaces(name: "nfbench-\(getpid())", interfaces: ["pod0"])
        defer { sandbox.remove() }
        var benchmark = DatapathBenchmark()
        benchmark.passes = passes
        let results = try benchmark.run(in: sandbox.namespace, ifindex: sandbox.ifindexes["pod0"]!)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(results))
        case .table:
            var table = Table(headers: ["CASE", "PREFIXES", "NS/PACKET", "FLOOR", "OVER FLOOR", "GOAL"])
            for result in results {
                let goal = result.goalOverFloor.map { "≤ floor + \(Int($0)) " + (result.overFloor <= $0 ? "(met)" : "(missed)") } ?? ""
                table.append([result.name, result.prefixes.map(String.init) ?? "-", String(format: "%.0f", result.nanosecondsPerPacket),
                              String(format: "%.0f", result.floorNanoseconds),
                              result.prefixes == nil ? "-" : String(format: "%+.0f", result.overFloor), goal])
            }
            context.print(table.render())
        }
    }
}

/// `netfence bench loader`: attach and apply times.
struct BenchLoaderCommand: Command {
    static let configuration = CommandConfiguration(
        name: "loader",
        abstract: "Attach 100 pods and apply 1,000 CIDRs to one; per-pod attach and apply times beside baselines.",
        discussion: """
            Builds a throwaway namespace with 100 host veths, loads netfence under a throwaway \
            pin root, attaches every pod and applies a PolicyEndpoint of 1,000 CIDRs to one of them. Beside them, \
            in the same run: loading the programs once per pod (what attaching costs when each pod gets its own \
            programs, as in the AWS agent) and writing the same 1,000 prefixes into a trie with nothing else. \
            Takes about half a minute; removes everything it made.
            """)

    static let pods = Option<Int>(long: "pods", help: "How many pods to attach.", default: 100)
    static let arguments = [pods.definition]

    let pods: Int
    init(parsed: ParsedArguments) { pods = parsed[Self.pods] }

    func validate() throws {
        if !(1...250).contains(pods) { throw UsageError("--pods must be between 1 and 250") }
    }

    func run(_ context: CommandContext) throws {
        let interfaces = (0..<pods).map { "nfbench\($0)" }
        let results = try withThrowawayLoader(context, interfaces: interfaces) { root, sandbox in
            try LoaderBenchmark().run(root: root, interfaces: interfaces, netns: sandbox.namespace.name)
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(results))
        case .table:
            var table = Table(headers: ["CASE", "MS", "GOAL"])
            for result in results {
                let goal = result.goalMilliseconds.map { "≤ \(Int($0)) ms " + (result.milliseconds <= $0 ? "(met)" : "(missed)") } ?? ""
                table.append([result.name, String(format: "%.2f", result.milliseconds), goal])
            }
            context.print(table.render())
        }
    }
}

/// `netfence bench events`: how fast the verdict log is read.
struct BenchEventsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "events",
        abstract: "Events per second decoded and written as JSON Lines, beside a raw drain of the ring.",
        discussion: """
            Loads netfence under a throwaway pin root with one pod on a throwaway interface and a policy, \
            sets the event level to all, and has the datapath fill the event ring with BPF_PROG_TEST_RUN (half \
            allowed IPv4 TCP, half denied IPv6 UDP). Readers take turns emptying it: one decodes, attributes and \
            writes every event as JSON Lines to /dev/null (what `ebpf events -o json` does), the other only takes \
            the records out (the baseline). Only the readers' time counts. Fails if the ring ever overflowed. \
            Takes about ten seconds; removes everything it made.
            """)

    static let events = Option<Int>(long: "events", help: "Events each reader takes.", default: 5_000_000)
    static let arguments = [events.definition]

    let events: Int
    init(parsed: ParsedArguments) { events = parsed[Self.events] }

    func validate() throws {
        if !(10_000...100_000_000).contains(events) { throw UsageError("--events must be between 10000 and 100000000") }
    }

    func run(_ context: CommandContext) throws {
        var benchmark = EventsBenchmark()
        benchmark.events = events
        let devNull = try FileDescriptor(opening: "/dev/null", flags: O_WRONLY, operation: "open /dev/null")
        let sink = OutputSink.fileDescriptor(devNull.rawValue)  // as the CLI writes to standard output
        let results = try withThrowawayLoader(context, interfaces: ["pod0"]) { root, sandbox in
            try benchmark.run(root: root, interface: "pod0", namespace: sandbox.namespace) { sink($0) }
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(results))
        case .table:
            var table = Table(headers: ["CASE", "EVENTS", "SECONDS", "EVENTS/S", "GOAL"])
            for result in results {
                let goal = result.goalEventsPerSecond.map {
                    "≥ \(Int($0).formatted()) /s " + (result.eventsPerSecond >= $0 ? "(met)" : "(missed)")
                } ?? ""
                table.append([result.name, "\(result.events)", String(format: "%.3f", result.seconds),
                              String(format: "%.0f", result.eventsPerSecond), goal])
            }
            context.print(table.render())
        }
    }
}

/// `netfence bench conntrack`: how fast a full conntrack table reads in words.
struct BenchConntrackCommand: Command {
    static let configuration = CommandConfiguration(
        name: "conntrack",
        abstract: "Read a conntrack table of 500,000 entries: conntrack list and maps dump beside bpftool and a raw batch read.",
        discussion: """
            Loads netfence under a throwaway pin root with one pod on a throwaway interface, has the datapath track \
            an IPv4 TCP and an IPv6 UDP flow (BPF_PROG_TEST_RUN), and fills the 512Ki-entry conntrack map with copies \
            of them from other remote endpoints. Then times, in turns: `netfence conntrack list -o json` and \
            `netfence ebpf maps dump` (a process each, output to /dev/null), `bpftool map dump` and \
            `bpftool -j map dump` of the same map, and a batch read that formats nothing (the baseline). Each \
            reports the median of its passes. Takes about a minute (bpftool's JSON is slow); removes everything it made.
            """)

    static let entries = Option<Int>(long: "entries", help: "Entries in the table while it is read.", default: 500_000)
    static let passes = Option<Int>(long: "passes", help: "Passes per case; the median is reported.", default: 3)
    static let arguments = [entries.definition, passes.definition]

    let entries: Int
    let passes: Int
    init(parsed: ParsedArguments) {
        entries = parsed[Self.entries]
        passes = parsed[Self.passes]
    }

    func validate() throws {
        if !(1_000...500_000).contains(entries) { throw UsageError("--entries must be between 1000 and 500000") }
        if !(1...20).contains(passes) { throw UsageError("--passes must be between 1 and 20") }
    }

    func run(_ context: CommandContext) throws {
        guard let bpftool = ["/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool"].first(where: FileManager.default.isExecutableFile) else {
            throw RuntimeError("bpftool is not installed; the benchmark compares with it", hint: "install it with 'apt-get install bpftool'")
        }
        let netfence = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var benchmark = ConntrackBenchmark()
        benchmark.entries = entries
        benchmark.passes = passes
        let results = try withThrowawayLoader(context, interfaces: ["pod0"]) { root, sandbox in
            try benchmark.run(root: root, interface: "pod0", namespace: sandbox.namespace, netfence: netfence, bpftool: bpftool)
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(results))
        case .table:
            var table = Table(headers: ["CASE", "SECONDS", "ENTRIES/S", "× RAW", "× FASTER THAN BPFTOOL -J", "GOAL"])
            for result in results {
                let goal = result.goal.map { $0 + (result.met == true ? " (met)" : " (missed)") } ?? ""
                table.append([result.name, String(format: "%.3f", result.seconds), String(format: "%.0f", result.entriesPerSecond),
                              String(format: "%.2f", result.timesRaw), String(format: "%.1f", result.timesFasterThanBpftoolJSON), goal])
            }
            context.print(table.render())
        }
    }
}

/// Runs `body` with a pin root for a throwaway loader and `interfaces` in a
/// throwaway namespace; removes both afterwards, also when `body` fails.
private func withThrowawayLoader<Result>(_ context: CommandContext, interfaces: [String],
                                         _ body: (_ root: PinRoot, _ sandbox: SandboxInterfaces) throws -> Result) throws -> Result {
    try NodeAccess.requirePrivileges(context)
    try BPFFilesystem.mountIfNeeded()
    let sandbox = try SandboxInterfaces(name: "nfbench-\(getpid())", interfaces: interfaces)
    let root = try PinRoot("\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(getpid())")
    defer {
        try? Loader.reset(root: root)
        sandbox.remove()
    }
    return try body(root, sandbox)
}

/// `netfence bench dns`.
struct BenchDNSCommand: Command {
    static let configuration = CommandConfiguration(
        name: "dns",
        abstract: "Queries per second and latency through netfence dns proxy beside straight to its upstream.",
        discussion: """
            Builds a throwaway node: dnsmasq serving a test zone in its own namespace, a client pod attached with a \
            domain rule for the zone, netfence dns proxy in the node namespace, and a pod without domain rules for the \
            baseline. In turns, dnsperf runs against dnsmasq directly and through the proxy (every proxied answer \
            writes a grant before it is released), and the same client times queries one after another for p50 and \
            p99. Reports medians and what the proxy adds; goals: at least 20,000 queries/s, at most 0.3 ms added at \
            p50. Needs dnsmasq and dnsperf; removes everything it made.
            """)

    static let seconds = Option<Int>(long: "seconds", help: "Seconds of each dnsperf pass.", default: 5)
    static let passes = Option<Int>(long: "passes", help: "Passes per case; the median is reported.", default: 3)
    static let arguments = [seconds.definition, passes.definition]

    let seconds: Int
    let passes: Int
    init(parsed: ParsedArguments) {
        seconds = parsed[Self.seconds]
        passes = parsed[Self.passes]
    }

    func validate() throws {
        if !(1...60).contains(seconds) { throw UsageError("--seconds must be between 1 and 60") }
        if !(1...20).contains(passes) { throw UsageError("--passes must be between 1 and 20") }
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        for tool in ["/usr/sbin/dnsmasq", "/usr/bin/dnsperf"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw RuntimeError("\(tool) is not installed; the benchmark needs it", hint: "install it with 'apt-get install dnsmasq dnsperf'")
        }
        var benchmark = DNSBenchmark()
        benchmark.seconds = seconds
        benchmark.passes = passes
        let summary = try benchmark.run(netfence: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(summary))
        case .table:
            var table = Table(headers: ["CASE", "QUERIES/S", "P50 MS", "P99 MS"])
            for result in [summary.direct, summary.proxied] {
                table.append([result.name, String(format: "%.0f", result.queriesPerSecond), String(format: "%.3f", result.p50Milliseconds),
                              String(format: "%.3f", result.p99Milliseconds)])
            }
            context.print(table.render())
            context.print(String(format: "added by the proxy: %.3f ms at p50, %.3f ms at p99", summary.addedP50Milliseconds, summary.addedP99Milliseconds))
            context.print("goals: ≥ 20,000 queries/s through the proxy: \(summary.throughputGoalMet ? "met" : "missed"); "
                + "≤ 0.3 ms added at p50: \(summary.latencyGoalMet ? "met" : "missed")")
        }
    }
}
