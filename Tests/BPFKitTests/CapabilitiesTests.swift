import Foundation
@testable import HostKit
import Testing

/// The capabilities every privileged command checks first, read without Foundation (the start
/// path), checked against Foundation's reading of the same file.
@Suite struct CapabilitiesTests {
    @Test func capabilitiesAreTheStatusFilesCapEffLine() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapEff:") })
        let expected = try #require(UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16))
        #expect(Capabilities.current().effective == expected)
    }

    @Test func aHexFieldIsFoundOnlyAtTheStartOfALine() {
        let text = Array("Name:\tx\nNotCapEff:\t1\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n".utf8)
        #expect(Capabilities.hexField("CapEff:", in: text) == 0x1ff_ffff_ffff)
        #expect(Capabilities.hexField("CapAmb:", in: text) == nil)
        #expect(Capabilities.hexField("CapEff:", in: Array("CapEff:\tzz\n".utf8)) == nil, "not hexadecimal")
        #expect(Capabilities.hexField("CapEff:", in: []) == nil)
    }
}
