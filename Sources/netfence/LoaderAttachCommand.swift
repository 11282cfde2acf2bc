import CommandTree
import DatapathModel
import Loader

/// `netfence loader attach`.
struct LoaderAttachCommand: Command {
    static let configuration = CommandConfiguration(
        name: "attach",
        abstract: "Attach the datapath to a pod's host veth and enforce what selects the pod.",
        discussion: """
            Attaches the shared programs (no verifier run) to both tc hooks of IFACE, registers the pod and applies \
            every applied object that selects it. Idempotent; a pod attached elsewhere before is moved. --netns names \
            the ip-netns namespace IFACE lives in (entered without remounting /sys).
            """)

    static let pod = Option<PodReference>(long: "pod", help: "The pod, as NAMESPACE/NAME.")
    static let interface = Option<String>(long: "iface", valueName: "name", help: "The pod's host veth.")
    static let netns = Option<String?>(long: "netns", valueName: "name", help: "The network namespace IFACE lives in (ip netns name).",
                                       default: nil, showDefault: false)
    static let ingressDefault = Option<PodDefault>(long: "ingress-default", help: "Ingress when nothing selects the pod.", default: .allow)
    static let egressDefault = Option<PodDefault>(long: "egress-default", help: "Egress when nothing selects the pod.", default: .allow)
    static let arguments = [pod.definition, interface.definition, netns.definition, ingressDefault.definition, egressDefault.definition,
                            LockWait.timeout.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    /// Names Linux could have given: an interface 1 to 15 bytes without '/', ':' or white space
    /// (`dev_valid_name`), a namespace a file name under /run/netns.
    func validate() throws {
        let interface = parsed[Self.interface]
        if interface.isEmpty || interface.utf8.count > 15 || interface == "." || interface == ".."
            || interface.unicodeScalars.contains(where: { "/:".unicodeScalars.contains($0) || $0.properties.isWhitespace }) {
            throw UsageError("--iface '\(interface)' is no interface name: Linux names them with 1 to 15 bytes, no '/', ':' or space")
        }
        if let netns = parsed[Self.netns], netns.isEmpty || netns == "." || netns == ".." || netns.contains("/") {
            throw UsageError("--netns '\(netns)' is no ip-netns name (a file name under /run/netns); leave it out for this namespace")
        }
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.openForChanges(context)
        let pod = parsed[Self.pod], interface = parsed[Self.interface]
        let report = try loader.attach(pod, interface: interface, netns: parsed[Self.netns],
                                       defaults: [.ingress: parsed[Self.ingressDefault], .egress: parsed[Self.egressDefault]])
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(AttachSummary(pod: pod, interface: interface, ifindex: report.ifindex,
                                                              podID: report.podID, revision: report.revision,
                                                              objects: report.objects.map(\.description), moved: report.moved)))
        case .table:
            context.print(TerminalText.escaped("\(report.moved ? "Moved" : "Attached") \(pod) on \(interface) (ifindex \(report.ifindex)): "
                + "pod id \(report.podID), revision \(report.revision), \(report.objects.count) object(s) select it"))
        }
    }
}

/// What `loader attach -o json` prints.
struct AttachSummary: Encodable {
    let pod: PodReference
    let interface: String
    let ifindex: UInt32
    let podID: UInt32
    let revision: UInt32
    let objects: [String]
    let moved: Bool
}

/// `netfence loader detach`.
struct LoaderDetachCommand: Command {
    static let configuration = CommandConfiguration(
        name: "detach",
        abstract: "Remove a pod's filters, policy and conntrack entries, and forget it.")

    static let pod = Option<PodReference>(long: "pod", help: "The pod, as NAMESPACE/NAME.")
    static let arguments = [pod.definition, LockWait.timeout.definition]

    let pod: PodReference
    init(parsed: ParsedArguments) { pod = parsed[Self.pod] }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.openForChanges(context)
        try loader.detach(pod)
        switch context.outputFormat {
        case .json: context.print(try JSONOutput.encode(["detached": pod]))
        case .table: context.print(TerminalText.escaped("Detached \(pod)"))
        }
    }
}
