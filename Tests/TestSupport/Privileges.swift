import BPFKit
import Foundation
import Glibc
import Testing

/// Probes for what privileged tests need. A test calls `try Privileges.require()`
/// first: where something is missing it says why; under CI=true that is a failure,
/// elsewhere the test returns early (Swift Testing has no runtime skip).
public enum Privileges {
    /// Why privileged tests cannot run here, or nil when they can.
    public static let missing: String? = probe()

    /// Whether the test may go on. Records a failure under CI=true when it may not.
    public static func require(_ sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard let missing else { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("privileged test cannot run (\(missing)); under CI=true a skip is a failure", sourceLocation: sourceLocation)
        } else {
            print("skipping privileged test: \(missing)")
        }
        return false
    }

    /// Whether the Debian tools at `paths` are installed (`package` names them in the message). Where
    /// one is missing: a failure under CI=true (scripts/install-dependencies installs them), else a skip.
    public static func tools(_ paths: [String], from package: String, _ sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard paths.allSatisfy(FileManager.default.isExecutableFile(atPath:)) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("\(package) is missing: scripts/install-dependencies installs it", sourceLocation: sourceLocation)
            } else {
                print("skipping: \(package) is missing")
            }
            return false
        }
        return true
    }

    private static func probe() -> String? {
        guard geteuid() == 0 else { return "needs root (CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN)" }
        do {
            try BPFFilesystem.mountIfNeeded()
        } catch {
            return "bpffs is not mounted and cannot be: \(error)"
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            return "needs iproute2's ip for network namespaces (apt-get install iproute2)"
        }
        return nil
    }
}

/// Names unique to this test process and call, so parallel tests never share a
/// namespace, interface, pin root or subnet.
public enum UniqueNames {
    private static let counter = Counter()

    /// A fresh small number for this process.
    public static func next() -> Int { counter.next() }

    /// `prefix` plus the pid and a fresh number, short enough for an interface name
    /// when `prefix` has at most 4 characters.
    public static func make(_ prefix: String) -> String {
        "\(prefix)\(getpid() % 100_000)x\(next())"
    }

    private final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func next() -> Int { lock.withLock { value += 1; return value } }
    }
}

/// A pin root on bpffs for one test, removed with everything below it on release.
public final class TestPinRoot {
    public let path: String
    /// The same folder as the loader takes it.
    public let pinRoot: PinRoot

    public init() throws {
        path = "\(BPFFilesystem.defaultMountPoint)/netfence-test-\(UniqueNames.make("r"))"
        pinRoot = try PinRoot(path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A folder under the temporary directory for one test, removed with what it holds on release.
public final class TemporaryFolder {
    public let path: String

    public init(_ prefix: String = "nf-test") throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UniqueNames.make("t"))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The text of the file `name` in it, nil when there is none.
    public func read(_ name: String) -> String? { FileManager.default.contents(atPath: "\(path)/\(name)").map { String(decoding: $0, as: UTF8.self) } }

    /// The size of the file `name` in it in bytes, nil when there is none.
    public func size(_ name: String) -> Int? { (try? FileManager.default.attributesOfItem(atPath: "\(path)/\(name)"))?[.size] as? Int }
}

/// A /30 in the test range 198.18.0.0/15 for each call: (node, pod) addresses.
public func testSubnet() -> (node: String, pod: String) {
    let n = UniqueNames.next() % 16_000 + 1
    let base = n * 4
    return ("198.18.\(base / 256).\(base % 256 + 1)", "198.18.\(base / 256).\(base % 256 + 2)")
}
