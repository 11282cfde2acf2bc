import CommandTree
import Foundation
import Glibc

// A reader that goes away (`netfence … | head`) must not kill the process
// before it cleans up: writes after that are dropped instead.
signal(SIGPIPE, SIG_IGN)

// Installed as aws-eks-na-cli (a symlink), netfence prints what that tool prints.
var arguments = Array(CommandLine.arguments.dropFirst())
let invokedAs = (CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent }) ?? ""
if let format = NaCliFormat(rawValue: invokedAs) { arguments = ["--format", format.rawValue] + arguments }

let status = Netfence.tree.run(
    arguments,
    standardOutput: .fileDescriptor(STDOUT_FILENO),
    standardError: .fileDescriptor(STDERR_FILENO))
exit(status)
