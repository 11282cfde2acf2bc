import BPFKit
import CommandTree
import Inspection
import Loader

/// The root of the command tree and the options every command accepts.
struct Netfence: Command {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        name: "netfence",
        abstract: "Kubernetes network policy on eBPF, node side: datapath, loader and introspection.",
        discussion: """
            netfence enforces Kubernetes network policy with tc eBPF programs on each pod's host veth. \
            Its introspection commands read what is loaded on this node and print it in words, or as JSON \
            for scripts (-o json).

            Most commands need root (CAP_BPF and CAP_SYS_ADMIN) and bpffs mounted at /sys/fs/bpf.
            """,
        subcommands: [EbpfCommand.self, LoaderCommand.self, PolicyCommand.self, ConntrackCommand.self, DNSCommand.self, FQDNCommand.self, MetricsCommand.self, BenchCommand.self, DemoCommand.self, CompletionsCommand.self, ManCommand.self])

    /// `-o table|json`, accepted by every command.
    static let output = Option<OutputFormat>(
        short: "o", long: "output", help: "Output format: table for people, json for scripts.", default: .table)

    /// Where netfence pins its programs and maps.
    static let bpffsRoot = Option<PinRoot>(
        long: "bpffs-root", valueName: "path", help: "The bpffs folder netfence pins its programs and maps under.",
        default: .standard, environment: "NETFENCE_BPFFS_ROOT", completion: .directory)

    /// `--format aws-eks-na-cli`: the text aws-eks-na-cli prints, for scripts that scrape it.
    static let compatibility = Option<NaCliFormat?>(
        long: "format", valueName: "name",
        help: "Print ebpf progs, maps, loaded-ebpfdata, dump-maps and dump-cp-maps as aws-eks-na-cli (or its -v6) prints them.",
        default: nil, showDefault: false)

    /// The command tree the binary runs, and help, completions and the man page describe.
    static let tree = CommandTree(
        root: Netfence.self, globals: [output.definition, bpffsRoot.definition, compatibility.definition], version: version,
        outputFormat: output.definition)

    init(parsed: ParsedArguments) {}
}

extension CommandContext {
    /// The output format chosen with `-o`.
    var outputFormat: OutputFormat { parsed[Netfence.output] }
    /// The pin root chosen with `--bpffs-root` or NETFENCE_BPFFS_ROOT, normalized.
    var pinRoot: PinRoot { parsed[Netfence.bpffsRoot] }
    /// aws-eks-na-cli's text instead of netfence's (`--format`, or the binary invoked under that name).
    var naCli: NaCliText.Flavor? { parsed[Netfence.compatibility]?.flavor }
}

/// How long a command that changes the node waits for another one to finish.
enum LockWait {
    static let timeout = Option<Double>(
        long: "wait-timeout", valueName: "seconds",
        help: "How long to wait for another netfence command changing this pin root to finish.",
        default: Loader.defaultLockTimeout)
}

/// The text layouts `--format` offers: aws-eks-na-cli's, and its IPv6 build's.
enum NaCliFormat: String, CaseIterable, ArgumentValue {
    case awsEksNaCli = "aws-eks-na-cli"
    case awsEksNaCliV6 = "aws-eks-na-cli-v6"

    static var defaultValueName: String { "name" }
    var flavor: NaCliText.Flavor { self == .awsEksNaCli ? .ipv4 : .ipv6 }
}
