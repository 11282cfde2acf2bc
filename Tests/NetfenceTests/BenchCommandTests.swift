import BPFKit
import Foundation
import Testing
import TestSupport

@Suite struct BenchCommandTests {
    /// A short run of `bench events`: both readers took every event, in JSON
    /// for scripts, and the command removed its namespace and pins.
    @Test func benchEventsMeasuresBothReadersAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let result = try NetfenceBinary.run(["bench", "events", "--events", "20000", "-o", "json"])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let rows = try jsonArray(result.standardOutput)
        #expect(rows.map { $0["name"] as? String } == ["decoded + attributed + JSON Lines to /dev/null", "baseline: raw drain (no decoding)"])
        for row in rows {
            #expect((row["events"] as? Int ?? 0) >= 20_000)
            #expect((row["eventsPerSecond"] as? Double ?? 0) > 0)
        }
        #expect(rows.first?["goalEventsPerSecond"] as? Double == 1_000_000)
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
    }

    @Test func benchEventsRefusesATooSmallRun() throws {
        let result = try NetfenceBinary.run(["bench", "events", "--events", "10"])
        #expect(result.status == 64)
        #expect(result.standardError.contains("--events must be between 10000 and 100000000"))
    }

    /// A short run of `bench conntrack`: every reader ran over the filled table (each case
    /// fails the run if its process fails or the raw read misses entries), ratios against
    /// the raw read and bpftool's JSON, and nothing left behind.
    @Test func benchConntrackTimesEveryReaderAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let result = try NetfenceBinary.run(["bench", "conntrack", "--entries", "5000", "--passes", "1", "-o", "json"])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let rows = try jsonArray(result.standardOutput)
        #expect(rows.count == 5)
        #expect(rows.first?["name"] as? String == "netfence conntrack list -o json > /dev/null")
        #expect(rows.first?["goal"] as? String == "≤ 2× raw, ≥ 15× faster than bpftool -j")
        #expect(rows.last?["name"] as? String == "baseline: raw batch read (no formatting)")
        #expect(rows.last?["timesRaw"] as? Double == 1)
        #expect(rows.contains { ($0["name"] as? String ?? "").hasPrefix("bpftool -j map dump id ") })
        for row in rows { #expect((row["seconds"] as? Double ?? 0) > 0) }
        let pid = "\(result.processID)"
        #expect(!FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/nfbench-\(pid)"), "namespace removed")
        #expect(!FileManager.default.fileExists(atPath: "\(BPFFilesystem.defaultMountPoint)/netfence-bench-\(pid)"), "pins removed")
    }

    @Test func benchConntrackRefusesATableLargerThanTheMap() throws {
        let result = try NetfenceBinary.run(["bench", "conntrack", "--entries", "600000"])
        #expect(result.status == 64)
        #expect(result.standardError.contains("--entries must be between 1000 and 500000"))
    }
}
