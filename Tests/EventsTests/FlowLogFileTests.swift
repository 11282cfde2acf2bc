import Datapath
import Foundation
import Glibc
import Testing
import TestSupport

@testable import Events

/// The flow log's files, rotation, reopening and cursor, on a real file system.
struct FlowLogFileTests {
    func line(_ number: Int) -> [UInt8] { Array("{\"n\":\(String(format: "%04d", number)),\"pad\":\"\(String(repeating: "x", count: 30))\"}\n".utf8) }

    /// Two CPUs' rings: even lines are events of CPU 0, odd ones of CPU 1, 100 bytes each.
    static let start = EventRingPosition([0, 0])

    func append(_ log: FlowLogFile, _ numbers: Range<Int>) throws {
        for number in numbers {
            try line(number).withUnsafeBytes { try log.append($0, endingAt: EventRingMark(cpu: number % 2, end: UInt64(number / 2 + 1) * 100)) }
        }
        try log.write()
    }

    @Test func filesRotateBeforeTheyWouldExceedTheSizeAndKeepEveryLineOnce() throws {
        let folder = try TemporaryFolder("nf-flowlog")
        let path = "\(folder.path)/flows.jsonl"
        let lineSize = line(0).count
        let log = try FlowLogFile(path: path, maxBytes: 5 * lineSize + 3, maxFiles: 10, ringID: 7, start: Self.start)
        try append(log, 0..<23)
        try log.close()
        let files = ["flows.jsonl.4", "flows.jsonl.3", "flows.jsonl.2", "flows.jsonl.1", "flows.jsonl"]
        #expect(files.compactMap(folder.size) == [5, 5, 5, 5, 3].map { $0 * lineSize }, "five lines fit, the sixth rotates")
        let all = files.compactMap(folder.read).joined()
        #expect(all == (0..<23).map { String(decoding: line($0), as: UTF8.self) }.joined(), "every line once, in order across files")
        #expect(folder.size("flows.jsonl.5") == nil)
    }

    @Test func theOldestFilesGoBeyondMaxFiles() throws {
        let folder = try TemporaryFolder("nf-flowlog")
        let log = try FlowLogFile(path: "\(folder.path)/f", maxBytes: line(0).count, maxFiles: 2, ringID: 1, start: Self.start)
        try append(log, 0..<6)
        #expect(folder.read("f") == String(decoding: line(5), as: UTF8.self))
        #expect(folder.read("f.1") == String(decoding: line(4), as: UTF8.self) && folder.read("f.2") == String(decoding: line(3), as: UTF8.self))
        #expect(folder.read("f.3") == nil)
    }

    /// Lines a killed writer wrote after its last cursor are cut (the ring gives their events again);
    /// the cursor's position is where the next writer resumes.
    @Test func aRestartCutsWhatTheCursorDoesNotCoverAndResumesAtIt() throws {
        let folder = try TemporaryFolder("nf-flowlog")
        let path = "\(folder.path)/flows"
        do {
            let log = try FlowLogFile(path: path, maxBytes: 1 << 20, maxFiles: 2, ringID: 9, start: Self.start)
            try append(log, 0..<4)
        }
        // As if killed after writing two more lines and before replacing the cursor.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(line(4) + line(5)))
        try handle.close()
        do {
            let again = try FlowLogFile(path: path, maxBytes: 1 << 20, maxFiles: 2, ringID: 9, start: Self.start)
            #expect(again.resumePosition == EventRingPosition([200, 200]), "lines 0 and 2 of CPU 0, 1 and 3 of CPU 1")
            #expect(folder.read("flows") == (0..<4).map { String(decoding: line($0), as: UTF8.self) }.joined())
            try append(again, 4..<5)
            try again.close()
        }
        // A log of other rings (reset, re-created; or as many CPUs no more): nothing to resume, nothing cut.
        do {
            let other = try FlowLogFile(path: "\(folder.path)/flows", maxBytes: 1 << 20, maxFiles: 2, ringID: 10, start: Self.start)
            #expect(other.resumePosition == nil && folder.size("flows") == 5 * line(0).count)
        }
        let fewer = try FlowLogFile(path: "\(folder.path)/flows", maxBytes: 1 << 20, maxFiles: 2, ringID: 10, start: EventRingPosition([0]))
        #expect(fewer.resumePosition == nil)
    }

    @Test func reopenFollowsARenameAndOneWriterHoldsTheLog() throws {
        let folder = try TemporaryFolder("nf-flowlog")
        let path = "\(folder.path)/flows"
        let log = try FlowLogFile(path: path, maxBytes: 1 << 20, maxFiles: 2, ringID: 1, start: Self.start)
        try append(log, 0..<2)
        #expect(rename(path, path + ".moved") == 0)  // what logrotate does before its SIGHUP
        try append(log, 2..<3)
        try log.reopen()
        try append(log, 3..<5)
        #expect(folder.read("flows.moved") == (0..<3).map { String(decoding: line($0), as: UTF8.self) }.joined())
        #expect(folder.read("flows") == (3..<5).map { String(decoding: line($0), as: UTF8.self) }.joined())
        #expect(throws: (any Error).self, "a second writer is refused") {
            _ = try FlowLogFile(path: path, maxBytes: 1 << 20, maxFiles: 2, ringID: 1, start: Self.start)
        }
    }
}
