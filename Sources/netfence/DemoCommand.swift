import BPFKit
import CommandTree
import DatapathModel
import Foundation
import Loader
import NodeNetwork
import PolicyInput

/// `netfence demo`: three throwaway pods under the real datapath, a policy
/// applied, traffic allowed and denied, and the introspection commands showing it.
struct DemoCommand: Command {
    static let configuration = CommandConfiguration(
        name: "demo",
        abstract: "Run three throwaway pods under the real datapath: apply a policy, probe traffic, inspect, clean up.",
        discussion: """
            Creates a node namespace routing between three pod namespaces (198.18.42.0/24 and 2001:db8:42::/48, test \
            ranges), loads netfence under BPFFS_ROOT/demo-PID, attaches the pods, and probes TCP, UDP and ICMP between \
            them before and after applying a PolicyEndpoint that lets only pod1 reach pod0, on TCP. Then prints \
            'loader status', 'ebpf progs' and 'ebpf maps' for the demo, and removes everything it created, also on \
            failure and when stopped half-way (SIGINT, SIGTERM, SIGHUP: one line on stderr, exit 128 + the signal).
            """)

    static let keep = Flag(long: "keep", help: "Leave the namespaces, filters and pins in place for a look around.")
    static let arguments = [keep.definition]

    static let port: UInt16 = 8080

    let keepResources: Bool
    init(parsed: ParsedArguments) { keepResources = parsed[Self.keep] }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.prepareBPFFilesystem(context)
        try StopSignals.removingWhatItMakes(context) { try demonstrate(context) }
    }

    private func demonstrate(_ context: CommandContext) throws {
        let pid = getpid()
        let throwaway = try ThrowawayRoot(context.pinRoot.appending("demo-\(pid)")), root = throwaway.root
        context.print("==> Creating a node and three pods (network namespaces joined by veth pairs)")
        let cluster = try ClusterNetwork(prefix: "nfdemo\(pid % 10_000)", pods: 3, subnet: 42)
        let servers = try cluster.pods.map { try ProbeServer(in: $0.namespace, port: Self.port) }
        defer {
            servers.forEach { $0.stop() }
            if keepResources {
                throwaway.keep()
                cluster.keep()
            } else {
                throwaway.remove()
                cluster.remove()
            }
        }

        context.print("==> netfence loader init, and loader attach for each pod (one program load for all of them)")
        // The demo's writer lets go of the root's lock before the read commands below run.
        var loader: Loader! = try Loader.initialize(root: root, migrate: false).0
        for (index, pod) in cluster.pods.enumerated() {
            let report = try loader.attach(PodReference(namespace: "demo", name: "pod\(index)"), interface: pod.hostInterface, netns: cluster.node.name,
                                           defaults: [.ingress: .allow, .egress: .allow])
            context.print("    demo/pod\(index) \(pod.ipv4) on \(pod.hostInterface) (pod id \(report.podID))")
        }
        try printMatrix(context, cluster, title: "Before any policy")

        let policy = """
            apiVersion: networking.k8s.aws/v1alpha1
            kind: PolicyEndpoint
            metadata: {name: web-ingress, namespace: demo}
            spec:
              policyRef: {name: web-ingress, namespace: demo}
              podIsolation: [Ingress]
              podSelectorEndpoints: [{name: pod0, namespace: demo, podIP: \(cluster.pods[0].ipv4)}]
              ingress:
              - cidr: \(cluster.pods[1].ipv4)/32
                ports: [{protocol: TCP, port: \(Self.port)}]
            """
        context.print("\n==> netfence loader apply -f - <<EOF\n\(policy)\nEOF")
        _ = try loader.apply(try PolicyDocumentParser.parse(policy))
        loader = nil
        try printMatrix(context, cluster, title: "After: only pod1 reaches pod0, and only on TCP")

        let scoped = context.parsed.setting(Netfence.bpffsRoot, to: root.path)
        let scopedContext = context.with(parsed: scoped)
        context.print("\n$ netfence loader status --bpffs-root \(root)")
        try LoaderStatusCommand(parsed: scoped).run(scopedContext)
        context.print("\n$ netfence ebpf progs --bpffs-root \(root)")
        try EbpfProgsCommand(parsed: scoped).run(scopedContext)
        context.print("\n$ netfence ebpf maps --bpffs-root \(root)")
        try EbpfMapsCommand(parsed: scoped).run(scopedContext)
        context.print(keepResources
            ? "\n==> Kept: namespaces \(cluster.node.name) and its pods; pins under \(root) ('netfence loader reset --bpffs-root \(root)' removes them)"
            : "\n==> Cleaning up: filters, pins and namespaces removed")
    }

    /// Probes every ordered pair of pods with TCP, UDP and ICMP and prints what connected.
    private func printMatrix(_ context: CommandContext, _ cluster: ClusterNetwork, title: String) throws {
        context.print("\n==> \(title)")
        var table = Table(headers: ["FROM", "TO", "TCP", "UDP", "ICMP"])
        for from in cluster.pods.indices {
            for to in cluster.pods.indices where to != from {
                let results = try Probe.allCases.map { probe in
                    try cluster.pods[from].namespace.probe(probe, to: cluster.pods[to].ipv4, port: Self.port) ? "ok" : "blocked"
                }
                table.append(["pod\(from)", "pod\(to)"] + results)
            }
        }
        context.print(table.render())
    }
}
