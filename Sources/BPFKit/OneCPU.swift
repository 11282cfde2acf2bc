import CNetfenceShim
import Foundation
import Glibc
import HostKit

/// Runs work with some processes (every thread) and the calling thread on one CPU (the first
/// the caller may use), then gives the calling thread its CPUs back (the processes keep theirs:
/// a benchmark's end with it). For measurements without wake-ups across CPUs, and for tests
/// whose events must land in one CPU's ring.
public enum OneCPU {
    public static func pinning(_ processes: [pid_t] = [], _ body: () throws -> Void) throws {
        var saved = [UInt8](repeating: 0, count: 128)  // 1,024 CPUs
        try check(nf_get_affinity(0, &saved, saved.count), "read the CPUs of", "this thread")
        defer { _ = nf_set_affinity(0, saved, saved.count) }
        // The first CPU this thread may use (a cpuset may leave out CPU 0).
        guard let byte = saved.firstIndex(where: { $0 != 0 }) else { throw SystemError("find a CPU for", "this thread", errno: EINVAL) }
        var first = [UInt8](repeating: 0, count: saved.count)
        first[byte] = saved[byte] & (~saved[byte] &+ 1)
        let threads = processes.flatMap { pid in
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { Int32($0) }
        }
        for thread in [0] + threads { try check(nf_set_affinity(thread, first, first.count), "put on one CPU", "thread \(thread)") }
        try body()
    }

    private static func check(_ result: Int32, _ operation: String, _ object: String) throws {
        guard result == 0 else { throw SystemError(operation, object, errno: -result) }
    }
}
