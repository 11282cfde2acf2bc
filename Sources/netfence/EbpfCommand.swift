import CommandTree

/// `netfence ebpf`: what is loaded in the kernel on this node.
struct EbpfCommand: Command {
    static let configuration = CommandConfiguration(
        name: "ebpf",
        abstract: "Inspect the eBPF programs and maps on this node.",
        discussion: "Lists what netfence pinned under its bpffs root, or with --all everything loaded on the host.",
        subcommands: [EbpfProgsCommand.self, EbpfMapsCommand.self, EbpfEventsCommand.self, EbpfDumpMapsCommand.self, EbpfDumpCPMapsCommand.self,
                      EbpfLoadedDataCommand.self])

    init(parsed: ParsedArguments) {}
}
