import Foundation
import HostKit

/// What one run of the `netfence` binary printed and returned.
public struct CommandResult: Sendable {
    public let status: Int32
    /// The process id it ran as (names of what it made may include it).
    public let processID: Int32
    public let standardOutput: String
    public let standardError: String
}

/// Runs the built `netfence` executable as a subprocess, as an operator would.
public enum NetfenceBinary {
    /// The binary beside the test bundle in the build folder, or $NETFENCE_BINARY.
    public static let path: String = {
        if let explicit = ProcessInfo.processInfo.environment["NETFENCE_BINARY"] { return explicit }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while folder.path != "/" {
            let candidate = folder.appendingPathComponent("netfence").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        return ".build/debug/netfence"
    }()

    /// Runs `netfence arguments…` as uid/gid `user` with no capabilities (util-linux setpriv).
    public static func run(_ arguments: [String], asUser user: UInt32) throws -> CommandResult {
        try run(arguments, wrappedIn: ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--inh-caps=-all"])
    }

    /// Runs `netfence arguments…` in a private mount namespace where bpffs is not
    /// mounted at /sys/fs/bpf (the host's mounts are untouched).
    public static func runWithoutBPFFilesystem(_ arguments: [String]) throws -> CommandResult {
        let script = "umount -R /sys/fs/bpf 2>/dev/null; mountpoint -q /sys/fs/bpf && exit 99; exec \"$@\""
        return try run(arguments, wrappedIn: ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh"])
    }

    /// No command of a test runs longer: a hang fails its test (status 137) instead of the whole run.
    public static let timeout = 180.0

    /// Runs `netfence arguments…` with `environment` added, behind `wrapper` (a command
    /// that ends by executing its arguments) when one is given.
    public static func run(_ arguments: [String], environment: [String: String] = [:], wrappedIn wrapper: [String] = []) throws -> CommandResult {
        let command = wrapper + [path] + arguments
        var merged = ProcessInfo.processInfo.environment
        merged.removeValue(forKey: "NETFENCE_BPFFS_ROOT")
        let result = try ChildProcess.run(command[0], Array(command.dropFirst()), output: .separate, environment: merged.merging(environment) { $1 },
                                           timeout: timeout)
        return CommandResult(status: result.status, processID: result.processID, standardOutput: result.output, standardError: result.errorOutput)
    }
}

extension Process {
    /// Sends `signal` and waits up to `seconds` for the exit, then kills it (SIGKILL);
    /// whether it exited of its own within the time.
    @discardableResult
    public func stop(signal: Int32, within seconds: Double) -> Bool {
        kill(processIdentifier, signal)
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning, Date() < deadline { usleep(20_000) }
        let exited = !isRunning
        if !exited { kill(processIdentifier, SIGKILL) }
        waitUntilExit()
        return exited
    }
}
