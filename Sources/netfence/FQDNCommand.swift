import CommandTree
import DatapathModel
import Foundation
import Inspection

/// `netfence fqdn`: what pods resolved through the DNS proxy.
struct FQDNCommand: Command {
    static let configuration = CommandConfiguration(
        name: "fqdn",
        abstract: "Show the addresses pods may reach by domain rules, as the DNS proxy granted them.",
        discussion: "See 'netfence fqdn list --help'.",
        subcommands: [FQDNListCommand.self])

    init(parsed: ParsedArguments) {}
}

/// `netfence fqdn list`.
struct FQDNListCommand: Command {
    static let configuration = CommandConfiguration(
        name: "list",
        abstract: "List each pod's granted addresses: the domain rule's name, the address, when it expires, the rule.",
        discussion: """
            One row per pod, address and domain pattern: an address stays reachable for new connections until it \
            expires (connections opened before go on). EXPIRES is relative to now; an expired row is kept for a while \
            so connections it let open survive a policy change. RULE is the policy and egress rule that allows the name.
            """)

    static let pod = Option<PodReference?>(long: "pod", help: "Only this pod, as NAMESPACE/NAME.", default: nil, showDefault: false)
    static let arguments = [pod.definition]

    let pod: PodReference?
    init(parsed: ParsedArguments) { pod = parsed[Self.pod] }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        let rows = try DomainGrantListing.collect(loader: loader).filter { row in
            pod.map { row.namespace == $0.namespace && row.pod == $0.name } ?? true
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(rows))
        case .table:
            guard !rows.isEmpty else { return context.print("No addresses granted\(pod.map { " to \($0)" } ?? "").") }
            var table = Table(headers: ["POD", "NAME", "ADDRESS", "EXPIRES", "RULE"])
            for row in rows {
                table.append(["\(row.namespace)/\(row.pod)", row.name, row.address, row.expiresText, row.rule])
            }
            context.print(table.render())
        }
    }
}
