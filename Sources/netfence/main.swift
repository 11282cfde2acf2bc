import CommandTree
import Foundation
import Glibc

// A reader that goes away (`netfence … | head`) must not kill the process
// before it cleans up: writes after that are dropped instead.
signal(SIGPIPE, SIG_IGN)

let status = Netfence.tree.run(
    Array(CommandLine.arguments.dropFirst()),
    standardOutput: .fileDescriptor(STDOUT_FILENO),
    standardError: .fileDescriptor(STDERR_FILENO))
exit(status)
