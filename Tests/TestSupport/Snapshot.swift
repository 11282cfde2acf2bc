import Foundation
import Testing

/// Compares text with a committed file. `NETFENCE_RECORD_SNAPSHOTS=1 swift test`
/// rewrites the files instead (never edit them by hand).
public enum Snapshot {
    /// Whether this run re-records.
    public static var isRecording: Bool { ProcessInfo.processInfo.environment["NETFENCE_RECORD_SNAPSHOTS"] == "1" }

    /// The package's root folder, from the path of a file in Tests/TARGET/.
    public static func packageRoot(_ filePath: String = #filePath) -> URL {
        URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Expects `actual` to equal the file at `relativePath` under the package root.
    public static func expect(_ actual: String, matches relativePath: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let url = packageRoot().appendingPathComponent(relativePath)
        if isRecording {
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        guard let committed = try? String(contentsOf: url, encoding: .utf8) else {
            Issue.record(Comment(rawValue: "\(relativePath) is missing; record it with NETFENCE_RECORD_SNAPSHOTS=1 swift test"),
                         sourceLocation: sourceLocation)
            return
        }
        if committed != actual {
            let firstDifference = zip(committed.split(separator: "\n", omittingEmptySubsequences: false),
                                      actual.split(separator: "\n", omittingEmptySubsequences: false))
                .enumerated().first { $0.element.0 != $0.element.1 }
            let detail = firstDifference.map { "line \($0.offset + 1): committed '\($0.element.0)', now '\($0.element.1)'" } ?? "lengths differ"
            let message = "\(relativePath) differs from what the code generates (\(detail)); "
                + "if the change is intended, re-record with NETFENCE_RECORD_SNAPSHOTS=1 swift test"
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }
}
