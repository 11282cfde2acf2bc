import BPFKit
import CommandTree
import Foundation
import Inspection
import Loader

/// `netfence ebpf loaded-ebpfdata` (`e`), the aws-eks-na-cli spelling: what runs for each pod.
struct EbpfLoadedDataCommand: Command {
    static let configuration = CommandConfiguration(
        name: "loaded-ebpfdata", aliases: ["e"],
        abstract: "Per pod and direction: interface, program and the maps it uses (netfence's and the AWS agent's).",
        discussion: """
            One row per pod and direction, from the pod's point of view. netfence's pods come from the loader's \
            state under the bpffs root: the program found on the host veth's tc hook (tc ingress carries what the \
            pod sends), the maps that program uses, and the pod's live policy trie (TRIE; '-' when nothing selects \
            the pod in that direction). On a node running the Amazon VPC CNI network-policy agent, its programs \
            pinned under --aws-root/programs (<pod identifier>_handle_ingress / _handle_egress) are listed the \
            same way. -o json prints one array with the table's fields and every map's id, name and type.
            """)

    static let pod = Option<String?>(long: "pod", valueName: "pod", help: "Only this pod (NAMESPACE/NAME, or an AWS pod identifier).",
                                     default: nil, showDefault: false)
    static let arguments = [pod.definition, AWSRoot.option.definition]

    let pod: String?
    let awsRoot: String
    init(parsed: ParsedArguments) {
        pod = parsed[Self.pod]
        awsRoot = parsed[AWSRoot.option]
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        if context.naCli != nil {
            return context.write(TerminalText.escaped(try NaCliText.loadedData(awsRoot: awsRoot), keepingLineBreaks: true))
        }
        try NodeAccess.requireBPFFilesystem(context)
        let loader = try? Loader(root: context.pinRoot)
        let rows = try LoadedData.collect(loader: loader, awsRoot: awsRoot).filter { pod == nil || $0.pod == pod }
        if let pod, rows.isEmpty {
            throw RuntimeError("pod \(pod) has no programs on this node", hint: "list pods with 'netfence ebpf loaded-ebpfdata'")
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(rows))
        case .table:
            guard !rows.isEmpty else {
                context.warn("no pod has programs here: netfence is "
                             + (loader == nil ? "not loaded under \(context.pinRoot)" : "attached to no pod")
                             + ", and nothing is pinned under \(awsRoot)/programs")
                return
            }
            var table = Table(headers: ["OWNER", "POD", "DIR", "IFACE", "HOOK", "PROG ID", "PROG NAME", "TRIE", "MAPS (NAME:ID)"])
            for row in rows {
                table.append([row.owner, row.pod, row.direction, row.interface ?? "-", row.hook ?? "-",
                              row.programID.map(String.init) ?? "-", row.programName ?? "-", row.policyTrieID.map(String.init) ?? "-",
                              row.maps.isEmpty ? "-" : row.maps.map { "\($0.name):\($0.id)" }.joined(separator: ", ")])
            }
            context.print(table.render())
        }
    }
}
