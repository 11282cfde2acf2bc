// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "netfence",
    products: [
        .executable(name: "netfence", targets: ["netfence"]),
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
        // Swift over libbpf: types that own file descriptors, typed errors.
        .target(name: "BPFKit", dependencies: ["CNetfenceShim", "CLibBPF"]),
        // Throwaway node/pod network namespaces joined by veth, for the demo and tests.
        .target(name: "NodeNetwork", dependencies: ["BPFKit"]),
        // The hand-written command tree: parsing, help, completions, man page.
        .target(name: "CommandTree"),
        // The binary: one file per command, wiring only.
        .executableTarget(
            name: "netfence",
            dependencies: ["BPFKit", "BPFObjects", "CommandTree", "NodeNetwork"]
        ),
        .testTarget(name: "CommandTreeTests", dependencies: ["CommandTree"]),
        .testTarget(name: "BPFKitTests", dependencies: ["BPFKit", "BPFObjects", "TestSupport"]),
        .testTarget(
            name: "NetfenceTests",
            dependencies: ["netfence", "BPFKit", "BPFObjects", "TestSupport"],
            exclude: ["Snapshots"]
        ),
        // Helpers shared by the test targets: privilege probes, throwaway netns.
        .target(name: "TestSupport", dependencies: ["BPFKit", "NodeNetwork"], path: "Tests/TestSupport"),
    ]
)
