import Foundation
import PackagePlugin

/// Compiles every `bpf/*.bpf.c` with clang's bpf target and embeds each object
/// in the target as a generated Swift file, so `swift build` never produces a
/// binary without its programs.
@main
struct EmbedBPFObjects: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpfDirectory = context.package.directoryURL.appending(path: "bpf")
        let files = try FileManager.default.contentsOfDirectory(atPath: bpfDirectory.path())
        let headers = files.filter { $0.hasSuffix(".h") }.map { bpfDirectory.appending(path: $0) }
        let embedder = try context.tool(named: "netfence-bpf-embed").url
        return files.filter { $0.hasSuffix(".bpf.c") }.sorted().map { file in
            let name = String(file.dropLast(".bpf.c".count))
            let source = bpfDirectory.appending(path: file)
            let output = context.pluginWorkDirectoryURL.appending(path: "\(name).bpf.swift")
            return .buildCommand(
                displayName: "Compiling BPF object bpf/\(file)",
                executable: embedder,
                arguments: [source.path(), bpfDirectory.path(), output.path(), name],
                inputFiles: [source] + headers,
                outputFiles: [output]
            )
        }
    }
}
