import Foundation

/// Runs iproute2's `ip`; a failure throws with the command and what it printed.
enum IPRoute {
    struct Failure: Error, CustomStringConvertible {
        let command: String
        let output: String
        var description: String { "'\(command)' failed: \(output)" }
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0 else {
            throw Failure(command: (["ip"] + arguments).joined(separator: " "), output: text)
        }
        return text
    }

    /// Deletes a network namespace if it is there; cleanup never fails.
    static func deleteNamespace(_ name: String) {
        _ = try? run(["netns", "delete", name])
    }

    /// `/usr/sbin/ip` or `/sbin/ip`, whichever iproute2 installed.
    static let executable = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/ip"
}
