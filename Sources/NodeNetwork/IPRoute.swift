import BPFKit
import Foundation
import HostKit

/// Runs iproute2's `ip`; a failure throws with the command and what it printed.
public enum IPRoute {
    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let output: String
        public init(command: String, output: String) {
            self.command = command
            self.output = output
        }
        public var description: String { "'\(command)' failed: \(output)" }
    }

    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        let result = try ChildProcess.run(executable, arguments)
        let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0 else {
            throw Failure(command: (["ip"] + arguments).joined(separator: " "), output: text)
        }
        return text
    }

    /// Deletes a network namespace if it is there; cleanup never fails.
    public static func deleteNamespace(_ name: String) {
        _ = try? run(["netns", "delete", name])
    }

    /// `/usr/sbin/ip` or `/sbin/ip`, whichever iproute2 installed.
    static let executable = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/ip"
}
