import BPFKit
import Glibc
import HostKit
import Loader
import NodeNetwork

/// Where a benchmark runs: a pin root of its own and host interfaces in a
/// namespace of its own, named after the process; both removed afterwards,
/// also when the benchmark fails or a stop signal ends it.
public enum ThrowawayNode {
    /// The pin root a benchmark of this process uses (`…/netfence-bench-PID`).
    public static var pinRoot: String { "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(getpid())" }
    /// The namespace its interfaces live in (`nfbench-PID`).
    public static var namespace: String { "nfbench-\(getpid())" }

    /// Runs `body` with the pin root and `interfaces` (in the throwaway namespace).
    public static func run<Result>(interfaces: [String], _ body: (_ root: PinRoot, _ sandbox: SandboxInterfaces) throws -> Result) throws -> Result {
        try BPFFilesystem.mountIfNeeded()
        let sandbox = try SandboxInterfaces(name: namespace, interfaces: interfaces)
        let root = try ThrowawayRoot(pinRoot)
        defer {
            root.remove()
            sandbox.remove()
        }
        return try body(root.root, sandbox)
    }
}

/// A program run inside a named network namespace (nsenter), as the pods' own tools run there.
enum InNamespace {
    static func start(_ namespace: String, _ command: [String]) throws -> ChildProcess.Running {
        try ChildProcess.start("/usr/bin/nsenter", ["--net=\(NetworkNamespace.namedFolder)/\(namespace)"] + command)
    }

    static func run(_ namespace: String, _ command: [String], timeout: Double? = nil) throws -> ChildProcess.Result {
        try ChildProcess.run("/usr/bin/nsenter", ["--net=\(NetworkNamespace.namedFolder)/\(namespace)"] + command, timeout: timeout)
    }
}
