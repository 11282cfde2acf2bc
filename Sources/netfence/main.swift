import CNI
import CommandTree
import Foundation
import Glibc
import HostKit

// A reader that goes away (`netfence … | head`) must not kill the process
// before it cleans up: writes after that are dropped instead.
signal(SIGPIPE, SIG_IGN)

let invokedAs = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""

// Installed as netfence-cni (a symlink in the CNI bin folder), netfence is a chained CNI plugin.
if invokedAs == "netfence-cni" {
    exit(CNIPlugin.run(environment: ProcessEnvironment.variables,
                       readInput: { (try? InputFile.read("-", limit: CNIConfiguration.maximumBytes).bytes) ?? [] },
                       output: { bytes in bytes.withUnsafeBytes { OutputSink.fileDescriptor(STDOUT_FILENO)($0) } },
                       log: { line in OutputSink.fileDescriptor(STDERR_FILENO).write(line + "\n") }))
}

// Installed as aws-eks-na-cli (a symlink), netfence prints what that tool prints.
var arguments = Array(CommandLine.arguments.dropFirst())
if let format = NaCliFormat(rawValue: invokedAs) { arguments = ["--format", format.rawValue] + arguments }

let status = Netfence.tree.run(
    arguments,
    standardOutput: .fileDescriptor(STDOUT_FILENO),
    standardError: .fileDescriptor(STDERR_FILENO))
exit(status)
