import CommandTree
import Foundation
import Testing

/// The environment every command starts with, read from `environ` (the start path) and by Foundation.
@Suite struct ProcessEnvironmentTests {
    @Test func theEnvironmentIsWhatProcessInfoReads() {
        #expect(ProcessEnvironment.variables == ProcessInfo.processInfo.environment)
    }
}
