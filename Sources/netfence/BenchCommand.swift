import Benchmarks
import CommandTree
import Foundation

/// `netfence bench`: measurements that print beside their baseline from the same run.
struct BenchCommand: Command {
    /// This process's binary: what the benchmarks that time netfence processes run.
    static var runningExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static let configuration = CommandConfiguration(
        name: "bench",
        abstract: "Measure netfence on this machine, each figure beside its baseline from the same run.",
        discussion: """
            Each benchmark builds throwaway namespaces, a pin root and servers named after its process id, and removes \
            them when it is done, also when it is stopped half-way (SIGINT, SIGTERM, SIGHUP): then it says so in one \
            line on stderr and exits with 128 + the signal.
            """,
        subcommands: [BenchDatapathCommand.self, BenchLoaderCommand.self, BenchEventsCommand.self, BenchConntrackCommand.self,
                      BenchDNSCommand.self, BenchExplainCommand.self, BenchCNICommand.self, BenchCLICommand.self, BenchScaleCommand.self,
                      BenchTrafficCommand.self])

    init(parsed: ParsedArguments) {}

    /// Runs a benchmark, removing what it makes also when stopped half-way, and prints its figures.
    static func measure(_ context: CommandContext, _ benchmark: () throws -> [Figure]) throws {
        try FigureTable.print(try StopSignals.removingWhatItMakes(context, benchmark), context)
    }
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
            one run each, on distinct flows. An established flow's repeated runs find their CPU's copy of the flow \
            (flow_cache), as a busy flow's packets do within a kernel tick; a flow's first packet in a tick looks its \
            conntrack entry up instead ('bench traffic' times both kinds in real traffic). Every case is interleaved \
            with the empty program measured the same way, and is read against that adjacent floor (AGAINST BASELINE: ns over it). At 10k prefixes a second pod with audit \
            objects (an audit Admin deny over every peer: each new allowed flow a would-deny) is measured in turn with the \
            first, and each path's ns over the floor is given beside the same without audit objects. Events are off, as on \
            a node that does not log, except in two groups: new denied and new allowed flows with events at level deny and \
            at level all, each beside the same with events off (three datapaths in turn, every event counted; goal: at most \
            1.15x), with the kernel ring's share beside what an event adds (a program that only writes an event-size \
            record, as the datapath does), and the capture case: a new denied flow whose event carries a 128-byte \
            capture, beside the same event without one (two datapaths in turn, the ring drained and every record's \
            size checked between samples). Last, what the verifier walked loading each program, beside its budget of \
            1,000,000 instructions (a program that needs more does not load). Runs inside a throwaway network \
            namespace; takes about a minute.
            """)

    static let passes = Option<Int>(long: "passes", help: "Passes per case; the minimum of their medians is reported.", default: 5)
    static let arguments = [passes.definition]

    let passes: Int
    init(parsed: ParsedArguments) { passes = parsed[Self.passes] }

    func validate() throws {
        try Self.passes.check(passes, within: 1...20)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = DatapathBenchmark()
        benchmark.passes = passes
        try BenchCommand.measure(context) { try benchmark.run() }
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
            Last, a change of that policy applied while a keeper of spare tries runs on the root, as under loader \
            serve (goal: at most 4x the raw writes). Takes about half a minute; removes everything it made.
            """)

    static let pods = Option<Int>(long: "pods", help: "How many pods to attach.", default: 100)
    static let arguments = [pods.definition]

    let pods: Int
    init(parsed: ParsedArguments) { pods = parsed[Self.pods] }

    func validate() throws {
        try Self.pods.check(pods, within: 1...250)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = LoaderBenchmark()
        benchmark.pods = pods
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// `netfence bench scale`: one cluster policy over many pods.
struct BenchScaleCommand: Command {
    static let configuration = CommandConfiguration(
        name: "scale",
        abstract: "Apply 10,000 CIDRs of cluster policy to 250 pods: time and trie memory beside the same for 1 pod.",
        discussion: """
            Builds a throwaway namespace with the pods' host veths, loads netfence under a throwaway pin root and \
            attaches every pod. Then, in rounds, applies Admin ClusterPolicyEndpoints of 10,000 CIDRs (one object per \
            2,000) selecting one pod, and the same selecting every pod, each removed again before the next. Reports \
            the median apply time of each and the kernel memory of the tries pods read after each (memlock of the \
            tries, as the kernel charges them): pods whose policy is identical share one trie (goal: apply at most 2x \
            one pod's, memory that of one pod's). Takes about a minute; removes everything it made.
            """)

    static let pods = Option<Int>(long: "pods", help: "How many pods the policy selects.", default: 250)
    static let cidrs = Option<Int>(long: "cidrs", help: "How many CIDRs the policy has.", default: 10_000)
    static let rounds = Option<Int>(long: "rounds", help: "Rounds of (1 pod, every pod); medians are reported.", default: 3)
    static let arguments = [pods.definition, cidrs.definition, rounds.definition]

    let pods: Int
    let cidrs: Int
    let rounds: Int
    init(parsed: ParsedArguments) {
        pods = parsed[Self.pods]
        cidrs = parsed[Self.cidrs]
        rounds = parsed[Self.rounds]
    }

    func validate() throws {
        try Self.pods.check(pods, within: 2...1_000)
        try Self.cidrs.check(cidrs, within: 1...60_000)
        try Self.rounds.check(rounds, within: 1...10)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = ScaleBenchmark()
        benchmark.pods = pods
        benchmark.cidrs = cidrs
        benchmark.rounds = rounds
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// `netfence bench traffic`: real traffic between two pods, with and without netfence.
struct BenchTrafficCommand: Command {
    static let configuration = CommandConfiguration(
        name: "traffic",
        abstract: "iperf3 throughput and sockperf transactions and latency between pods, with and without netfence.",
        discussion: """
            Builds a throwaway node with four pods (network namespaces behind host veths) in two pairs and runs \
            iperf3 (TCP throughput, the receiver's rate) and sockperf ping-pong over TCP (round trips per second, p50 \
            and p99) from each pair's client to its server: with no program on the veths, and with netfence enforcing \
            a 10,000-prefix policy on the pair (the client's egress and the server's ingress, the peer among the \
            prefixes) with events off, at deny and at all. First one pair alone, the cases in turns, each round in \
            another order: medians, beside no program, which is measured again as a case of its own (this run's \
            spread); these rows carry no goal, since on a small shared VM two runs of the same case lie further apart \
            than netfence could cost. Then the two pairs side by side, at the same time, one with netfence and one \
            without (which one alternates by round), so both meet the same machine: each round gives a ratio, and \
            the round with the median ratio is reported, its two flows beside each other; the control has no program \
            on either pair. A round's ratio moves by about 2 % on a small VM however long the round lasts, so these \
            rounds are many and short (20 of 1 s: the median resolves some 0.5 %). Goals, side by side: at least \
            97 % of the other pair's throughput and transactions, p99 within 5 %. Two more rows say what that is \
            made of: an empty tc program on the four hooks beside no program (the hook's own cost), and netfence \
            beside an empty program on the other pair (what its programs add); during that case's ping-pong the \
            kernel times every program run (run-time statistics), and a last row gives the ns per packet in \
            netfence's programs beside the empty program's. Two more measure what tcx links (kernel 6.6 on) change: the \
            empty program through tcx instead of cls_bpf filters, and netfence on the links 'loader serve' moves a \
            pod onto once it stayed, under 'loader init --attach tc-then-tcx' (the goals hold there too). Needs Debian's \
            iperf3 and sockperf. Takes about a quarter of an hour with the defaults; removes everything it made.
            """)

    static let seconds = Option<Int>(long: "seconds", help: "Seconds each iperf3 and sockperf run of one pair alone lasts.", default: 3)
    static let rounds = Option<Int>(long: "rounds", help: "Rounds of one pair alone; medians are reported.", default: 3)
    static let sideBySideSeconds = Option<Int>(long: "side-by-side-seconds", valueName: "n",
                                               help: "Seconds each iperf3 and sockperf run side by side lasts.", default: 1)
    static let sideBySideRounds = Option<Int>(long: "side-by-side-rounds", valueName: "n",
                                              help: "Rounds of the two pairs side by side; the median round is reported.", default: 20)
    static let arguments = [seconds.definition, rounds.definition, sideBySideSeconds.definition, sideBySideRounds.definition]

    let seconds: Int
    let rounds: Int
    let sideBySideSeconds: Int
    let sideBySideRounds: Int
    init(parsed: ParsedArguments) {
        seconds = parsed[Self.seconds]
        rounds = parsed[Self.rounds]
        sideBySideSeconds = parsed[Self.sideBySideSeconds]
        sideBySideRounds = parsed[Self.sideBySideRounds]
    }

    func validate() throws {
        try Self.seconds.check(seconds, within: 1...60)
        try Self.rounds.check(rounds, within: 1...20)
        try Self.sideBySideSeconds.check(sideBySideSeconds, within: 1...60)
        try Self.sideBySideRounds.check(sideBySideRounds, within: 1...100)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = TrafficBenchmark()
        benchmark.seconds = seconds
        benchmark.rounds = rounds
        benchmark.pairedSeconds = sideBySideSeconds
        benchmark.pairedRounds = sideBySideRounds
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// `netfence bench events`: how fast the verdict log is read.
struct BenchEventsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "events",
        abstract: "Events per second decoded and written as JSON Lines and as pcapng, beside a raw drain of the ring.",
        discussion: """
            Loads netfence under a throwaway pin root with one pod on a throwaway interface and a policy, \
            sets the event level to all with 128-byte captures of every event, and has the datapath fill the event \
            ring with BPF_PROG_TEST_RUN (half allowed IPv4 UDP, half denied IPv6 UDP). Four readers take turns \
            emptying it: one only visits the records (the baseline), one decodes, attributes and writes every event \
            as JSON Lines to /dev/null as the rings' consumer (what a flow log does), one writes them as pcapng \
            with their packets (what `ebpf events --pcap` does), and a watcher writes JSON Lines as `ebpf events \
            -o json` does beside a flow log (each record copied out and checked), read beside the consumer's. \
            Only the readers' time counts. Fails if the ring ever \
            overflowed or an event came without its capture. Takes about ten seconds; removes everything it made.
            """)

    static let events = Option<Int>(long: "events", help: "Events each reader takes.", default: 5_000_000)
    static let arguments = [events.definition]

    let events: Int
    init(parsed: ParsedArguments) { events = parsed[Self.events] }

    func validate() throws {
        try Self.events.check(events, within: 10_000...100_000_000)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = EventsBenchmark()
        benchmark.events = events
        try BenchCommand.measure(context) { try benchmark.run() }
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
        try Self.entries.check(entries, within: 1_000...500_000)
        try Self.passes.check(passes, within: 1...20)
    }

    func run(_ context: CommandContext) throws {
        guard let bpftool = ["/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool"].first(where: FileManager.default.isExecutableFile) else {
            throw RuntimeError("bpftool is not installed; the benchmark compares with it", hint: "install it with 'apt-get install bpftool'")
        }
        try NodeAccess.requirePrivileges(context)
        var benchmark = ConntrackBenchmark()
        benchmark.entries = entries
        benchmark.passes = passes
        try BenchCommand.measure(context) { try benchmark.run(netfence: try NodeAccess.executablePath(), bpftool: bpftool) }
    }
}

/// `netfence bench dns`.
struct BenchDNSCommand: Command {
    static let configuration = CommandConfiguration(
        name: "dns",
        abstract: "Answers per second and latency through netfence dns proxy beside straight to its upstream.",
        discussion: """
            Builds a throwaway node: dnsmasq serving a test zone in its own namespace, a client pod attached with a \
            domain rule for the zone, netfence dns proxy in the node namespace, and a pod without domain rules for the \
            baseline. In turns, dnsperf runs against dnsmasq directly, through the proxy (every proxied answer \
            writes a grant before it is released) and through dnsdist (a C++ forwarder on the same hops: what \
            forwarding alone reaches on this machine), and the same client times queries one after another for p50 \
            and p99, then once more with dnsmasq, the proxy, dnsdist and itself on one CPU (what each forwarder adds \
            without wake-ups across CPUs). Rates count NOERROR answers only (dnsperf counts a SERVFAIL as a completed \
            query); the share of other answers is printed, the share of the machine's CPU left idle in each case \
            (client, upstream and forwarder share it), and the CPU time each answer costs dnsmasq, the proxy and \
            dnsdist (steadier than the rates on a machine whose CPUs are shared). The default load, 100 queries \
            outstanding from the one client pod, stays within the proxy's bound of 128 waiting queries per pod. \
            Reports medians and what the proxy adds; goals: 80% of dnsdist's answers/s (what forwarding alone \
            leaves of the upstream's rate is the machine's, not the proxy's), at most 0.05 ms added at p50. Needs \
            dnsmasq and dnsperf (dnsdist for its rows and the rate's goal); removes everything it made.
            """)

    static let seconds = Option<Int>(long: "seconds", help: "Seconds of each dnsperf pass.", default: 5)
    static let passes = Option<Int>(long: "passes", help: "Passes per case; the median is reported.", default: 3)
    static let outstanding = Option<Int>(long: "outstanding", help: "Queries dnsperf keeps outstanding (from the one client pod).",
                                         default: DNSBenchmark().outstanding)
    static let arguments = [seconds.definition, passes.definition, outstanding.definition]

    let seconds: Int
    let passes: Int
    let outstanding: Int
    init(parsed: ParsedArguments) {
        seconds = parsed[Self.seconds]
        passes = parsed[Self.passes]
        outstanding = parsed[Self.outstanding]
    }

    func validate() throws {
        try Self.seconds.check(seconds, within: 1...60)
        try Self.passes.check(passes, within: 1...20)
        try Self.outstanding.check(outstanding, within: 8...10_000)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        for tool in DNSBenchmark.requiredTools where !FileManager.default.isExecutableFile(atPath: tool) {
            throw RuntimeError("\(tool) is not installed; the benchmark needs it", hint: "install it with 'apt-get install dnsmasq dnsperf'")
        }
        var benchmark = DNSBenchmark()
        if let peer = benchmark.peer, !FileManager.default.isExecutableFile(atPath: peer) {
            context.warn("\(peer) is not installed: the rows beside dnsdist, and the rate's goal, are left out ('apt-get install dnsdist' adds them)")
            benchmark.peer = nil
        }
        benchmark.seconds = seconds
        benchmark.passes = passes
        benchmark.outstanding = outstanding
        try BenchCommand.measure(context) { try benchmark.run(netfence: try NodeAccess.executablePath()) }
    }
}

/// `netfence bench explain`.
struct BenchExplainCommand: Command {
    static let configuration = CommandConfiguration(
        name: "explain",
        abstract: "How long policy explain works on a pod with 60,000 prefixes, beside its trie lookup loop.",
        discussion: """
            Builds a throwaway node with one pod, applies a PolicyEndpoint of 60,000 CIDRs to it and times policy \
            explain in process (live state, reference decision, words, and the loaded program's side-effect-free \
            confirmation) beside the lookup loop that finds the peer's prefix in the live trie. Goal: at most 20 ms. \
            Takes a few seconds; removes everything it made.
            """)

    static let prefixes = Option<Int>(long: "prefixes", help: "Prefixes in the pod's ingress trie.", default: 60_000)
    static let arguments = [prefixes.definition]

    let prefixes: Int
    init(parsed: ParsedArguments) { prefixes = parsed[Self.prefixes] }

    func validate() throws {
        try Self.prefixes.check(prefixes, within: 1...65_000)
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = ExplainBenchmark()
        benchmark.prefixes = prefixes
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// `--samples` of the benchmarks that time whole processes (bench cni, bench cli).
enum ProcessSamples {
    static func option(help: String) -> Option<Int> { Option<Int>(long: "samples", help: help, default: 30) }

    static func validate(_ samples: Int) throws {
        try option(help: "").check(samples, within: 3...1000)
    }
}

/// `netfence bench cni`: what netfence-cni adds to a pod's creation.
struct BenchCNICommand: Command {
    static let configuration = CommandConfiguration(
        name: "cni",
        abstract: "ADD latency of Debian's ptp + host-local chain with netfence-cni, beside the chain without it.",
        discussion: """
            Builds a throwaway node namespace and pin root, and creates pods one after another the way a container \
            runtime does: each plugin executed (inside the node namespace) with the CNI environment and its configuration \
            on standard input, prevResult passed on; alternately through ptp + host-local alone and through ptp + \
            host-local + netfence-cni (this binary, as a symlink). Each pod is deleted (DEL) before the next. Reports the \
            median ADD of both and netfence-cni's own process time. Goal: at most +10 ms for netfence's part. Needs \
            Debian's containernetworking-plugins; takes a few seconds; removes everything it made.
            """)

    static let samples = ProcessSamples.option(help: "Pods created through each chain.")
    static let arguments = [samples.definition]

    let samples: Int
    init(parsed: ParsedArguments) { samples = parsed[Self.samples] }

    func validate() throws { try ProcessSamples.validate(samples) }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = CNIBenchmark(executable: BenchCommand.runningExecutable)
        benchmark.samples = samples
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// `netfence bench cli`: a loader call as the agent pays it, process start included.
struct BenchCLICommand: Command {
    static let configuration = CommandConfiguration(
        name: "cli",
        abstract: "The real netfence processes an agent runs (--version, status, attach + detach, a small apply) beside bpftool version.",
        discussion: """
            Builds a throwaway node with three pod interfaces and times whole processes of this binary, start-up \
            included, beside `bpftool version` started the same way in the same run: --version (goal: at most 3x \
            bpftool), loader status -o json, loader attach + detach (goal: at most 10 ms for the pair) and loader apply \
            of one PolicyEndpoint of 10 CIDRs (goal: at most 10 ms). Then the same calls as requests to loader serve \
            on one kept connection (its keeper fills spare tries and recycles what changes let go), and the apply as \
            a process while that server runs. Where the kernel has tcx: attach + detach through tcx links (no goal) \
            and under --attach tc-then-tcx (goal: at most 10 ms), what a server's move of a pod that stayed costs \
            (its links made without the root's lock; then pinned, the lock held: goal at most 10 ms), and the detach \
            of a pod on links. Build with scripts/build-node for the figures a node sees (linked \
            statically: a dynamically linked binary spends half its start mapping libraries and binding their \
            symbols). Takes a few seconds; removes \
            everything it made.
            """)

    static let samples = ProcessSamples.option(help: "Runs of each command.")
    static let arguments = [samples.definition]

    let samples: Int
    init(parsed: ParsedArguments) { samples = parsed[Self.samples] }

    func validate() throws { try ProcessSamples.validate(samples) }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        var benchmark = CLIBenchmark(executable: BenchCommand.runningExecutable)
        benchmark.samples = samples
        try BenchCommand.measure(context) { try benchmark.run() }
    }
}

/// How every `bench` prints: one row per figure, beside its baseline, what the figure is
/// against it (`+46 ns`, `1.52×`, `25.1× faster`), and the goal with whether this run met it.
enum FigureTable {
    static func print(_ figures: [Figure], _ context: CommandContext) throws {
        if context.outputFormat == .json { return context.print(try JSONOutput.encode(figures)) }
        var table = Table(headers: ["CASE", "FIGURE", "BASELINE", "AGAINST BASELINE", "GOAL"])
        for figure in figures {
            table.append([figure.name, text(figure.value, figure.unit), figure.baseline.map { text($0.value, figure.unit) } ?? "",
                          figure.compared(figure.comparison).map { compared($0, figure) } ?? "", goal(figure)])
        }
        context.print(table.render())
    }

    static func text(_ value: Double, _ unit: Figure.Unit) -> String {
        switch unit {
        case .nanoseconds: String(format: "%.0f ns", value)
        case .milliseconds: String(format: value < 10 ? "%.3f ms" : "%.1f ms", value)
        case .seconds: String(format: "%.3f s", value)
        case .perSecond: "\(Int(value.rounded()).formatted()) /s"
        case .mebibytes: String(format: "%.1f MiB", value)
        case .microseconds: String(format: "%.1f µs", value)
        case .gigabitsPerSecond: String(format: "%.2f Gbit/s", value)
        case .percent: String(format: "%.2f %%", value)
        case .instructions: "\(Int(value.rounded()).formatted()) insns"
        }
    }

    static func compared(_ value: Double, _ figure: Figure) -> String {
        // Within half a hundredth of its goal's limit a ratio gets a third decimal: "0.97× ≥ 0.97× (missed)" reads as a contradiction.
        let nearGoal = figure.goal.map { $0.comparison == .times && abs(value - $0.limit) < 0.005 } ?? false
        return switch figure.comparison {
        case .value: text(value, figure.unit)
        case .over: (value >= 0 ? "+" : "-") + text(abs(value), figure.unit)
        case .times: String(format: value < 0.1 ? "%.4f×" : nearGoal ? "%.3f×" : "%.2f×", value)
        case .faster: String(format: "%.1f× faster", value)
        }
    }

    static func goal(_ figure: Figure) -> String {
        guard let goal = figure.goal, let met = figure.met else { return "" }
        let bound = goal.bound == .atMost ? "≤" : "≥"
        let limit = switch goal.comparison {
        case .value: text(goal.limit, figure.unit)
        case .over: "+" + text(goal.limit, figure.unit)
        case .times: String(format: "%g×", goal.limit)
        case .faster: String(format: "%g× faster", goal.limit)
        }
        return "\(bound) \(limit) (\(met ? "met" : "missed"))"
    }
}
