// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "netfence",
    products: [
        .executable(name: "netfence", targets: ["netfence"]),
    ],
    dependencies: [
        // YAML input as kubectl prints it (multi-document included).
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The DNS proxy's sockets (one event loop for UDP, TCP and the upstream) and the metrics server (HTTP/1).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // libbpf from the system (Debian: libbpf-dev, libelf-dev).
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]
        ),
        // The thin C layer: option structs, namespace threads, glibc gaps.
        .target(name: "CNetfenceShim", dependencies: ["CLibBPF"]),
        // The compiled programs of bpf/, embedded by the plugin below.
        .target(name: "BPFObjects", plugins: ["EmbedBPFObjects"]),
        .executableTarget(name: "netfence-bpf-embed"),
        .plugin(
            name: "EmbedBPFObjects",
            capability: .buildTool(),
            dependencies: ["netfence-bpf-embed"]
        ),
        // The host, not BPF: file descriptors, processes, clocks, capabilities, locks, typed errno.
        .target(name: "HostKit"),
        // Swift over libbpf: types that own BPF objects' descriptors, typed errors.
        .target(name: "BPFKit", dependencies: ["CNetfenceShim", "CLibBPF", "HostKit"]),
        // The ABI header (bpf/netfence_abi.h) for Swift: constants and struct layouts.
        .target(name: "CNetfenceABI"),
        // The datapath as pure values: ABI codecs, policy compiler, reference evaluator.
        .target(name: "DatapathModel", dependencies: ["CNetfenceABI"]),
        // PolicyEndpoint / ClusterPolicyEndpoint documents: parsing, validation, per-pod rules.
        .target(name: "PolicyInput", dependencies: ["DatapathModel", "DNS", .product(name: "Yams", package: "Yams")]),
        // The loaded datapath: programs, maps, pods, atomic policy swaps, events.
        .target(name: "Datapath", dependencies: ["HostKit", "BPFKit", "BPFObjects", "CNetfenceShim", "DatapathModel"]),
        // The loader a node agent drives: pods, applied objects, state in bpffs.
        .target(name: "Loader", dependencies: ["HostKit", "BPFKit", "BPFObjects", "Datapath", "DatapathModel", "PolicyInput"]),
        // Output built as bytes: a growing buffer and a cursor that writes JSON, addresses, table cells.
        .target(name: "Rendering", dependencies: ["CommandTree", "DatapathModel"]),
        // The verdict log and counters in words: attribution, filters, metrics.
        .target(name: "Events", dependencies: [
            "BPFKit", "CommandTree", "Datapath", "DatapathModel", "HostKit", "Inspection", "Loader", "PolicyInput", "Rendering",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // `netfence loader serve`: commands over HTTP/1.1 on a Unix socket, and the blocking client agents hold.
        .target(name: "LoaderService", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // The datapath's maps (and the AWS agent's) in words: layouts, conntrack, streamed dumps.
        .target(name: "Inspection", dependencies: ["HostKit", "BPFKit", "DNS", "DatapathModel", "Loader", "PolicyInput", "Rendering"]),
        // DNS as the domain-name policy needs it: messages (compression, CNAME chains, TTLs), names and patterns.
        .target(name: "DNS"),
        // `netfence dns proxy`: pods' DNS filtered by their domain rules; learned addresses granted before answers go back.
        .target(name: "DNSProxy", dependencies: [
            "BPFKit", "HostKit", "DNS", "Datapath", "DatapathModel", "Loader",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // Every `bench`: each figure beside its baseline from the same run, and the goal it is held to.
        .target(name: "Benchmarks", dependencies: [
            "BPFKit", "BPFObjects", "CNetfenceShim", "HostKit", "DNS", "Datapath", "DatapathModel", "Events", "Inspection", "Loader", "LoaderService", "NodeNetwork",
            "PolicyInput",
        ]),
        // Throwaway node/pod network namespaces joined by veth, for the demo and tests.
        .target(name: "NodeNetwork", dependencies: ["HostKit", "BPFKit"]),
        // netfence-cni: the CNI spec's contract (environment, stdin, result, errors) over the loader.
        .target(name: "CNI", dependencies: ["BPFKit", "CommandTree", "DatapathModel", "Loader"]),
        // The hand-written command tree: parsing, help, completions, man page.
        .target(name: "CommandTree"),
        // The binary: one file per command, wiring only.
        .executableTarget(
            name: "netfence",
            dependencies: ["HostKit", "BPFKit", "BPFObjects", "Benchmarks", "CNI", "CommandTree", "DNS", "DNSProxy", "Datapath", "DatapathModel", "Events",
                           "Inspection", "Loader", "LoaderService", "NodeNetwork", "PolicyInput", "Rendering"]
        ),
        .testTarget(name: "CommandTreeTests", dependencies: ["CommandTree"]),
        .testTarget(name: "CNITests", dependencies: ["CNI"]),
        .testTarget(name: "DNSTests", dependencies: ["DNS"]),
        .testTarget(name: "DatapathModelTests", dependencies: ["DatapathModel", "CNetfenceABI"]),
        .testTarget(name: "PolicyInputTests", dependencies: ["PolicyInput", "DatapathModel", "DNS", "TestSupport"]),
        .testTarget(name: "LoaderTests", dependencies: ["Loader", "PolicyInput", "DatapathModel", "DNS", "TestSupport"]),
        .testTarget(name: "InspectionTests", dependencies: ["Inspection", "Loader", "PolicyInput", "DatapathModel", "CNetfenceABI"]),
        .testTarget(name: "EventsTests", dependencies: ["Events", "Datapath", "DatapathModel", "Loader", "PolicyInput", "TestSupport"]),
        .testTarget(name: "DatapathTests", dependencies: ["HostKit", "Datapath", "DatapathModel", "BPFKit", "CNetfenceABI", "CNetfenceShim", "NodeNetwork", "TestSupport"]),
        .testTarget(name: "BPFKitTests", dependencies: ["HostKit", "BPFKit", "BPFObjects", "TestSupport"]),
        .testTarget(
            name: "NetfenceTests",
            dependencies: ["HostKit", "netfence", "Benchmarks", "BPFKit", "BPFObjects", "CLibBPF", "DNS", "DNSProxy", "Datapath", "DatapathModel", "Loader", "LoaderService",
                           "NodeNetwork",
                           "PolicyInput", "TestSupport", .product(name: "Yams", package: "Yams")],
            exclude: ["Snapshots"]
        ),
        // Helpers shared by the test targets: privilege probes, throwaway netns.
        .target(name: "TestSupport", dependencies: ["HostKit", "BPFKit", "BPFObjects", "DNS", "DatapathModel", "NodeNetwork"], path: "Tests/TestSupport"),
    ]
)

// Concrete generic types are instantiated through their metadata accessors, not by mangled name:
// a name is demangled at run time, and each generic requirement it carries (a dictionary's
// `Key: Hashable`) is found by scanning all of the binary's 7,000 protocol conformances, about
// 0.2 ms per type in a new process (half of a loader attach). Every loader call and CNI ADD is one.
for target in package.targets where [.regular, .executable, .test].contains(target.type) {
    target.swiftSettings = (target.swiftSettings ?? [])
        + [.unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"])]
}
