import CommandTree
import Foundation
import Glibc

// A reader that goes away (`netfence … | head`) must not kill the process
// before it cleans up: writes after that are dropped instead.
signal(SIGPIPE, SIG_IGN)

func write(_ text: String, to handle: FileHandle) {
    try? handle.write(contentsOf: Data(text.utf8))
}

let status = Netfence.tree.run(
    Array(CommandLine.arguments.dropFirst()),
    standardOutput: { write($0, to: .standardOutput) },
    standardError: { write($0, to: .standardError) })
exit(status)
