import Glibc
@testable import HostKit
import Synchronization
import Testing

/// The registry a stop signal empties (`Interruption`), from its owners' side: each removal runs
/// once, a forgotten one never, and one that runs a child process (which registers itself) does
/// not wait for itself. The stop itself ends a process: `aBenchStoppedHalfWayRemovesWhatItMade`.
@Suite struct InterruptionTests {
    @Test func aRemovalRunsOnceAndAForgottenOneNever() throws {
        let runs = Mutex([String]())
        let first = Interruption.register { runs.withLock { $0.append("first") } }
        let forgotten = Interruption.register { runs.withLock { $0.append("forgotten") } }
        let spawning = Interruption.register {
            let status = (try? ChildProcess.run("/bin/true", []))?.status
            runs.withLock { $0.append("spawning \(status.map(String.init) ?? "failed")") }
        }
        first.run()
        first.run()
        forgotten.forget()
        forgotten.run()
        spawning.run()
        #expect(runs.withLock { $0 } == ["first", "spawning 0"])
    }

    /// A child process is unregistered once reaped, before its pid can go to another process: a stop
    /// kills only children still running (or not yet reaped).
    @Test func aChildIsUnregisteredOnceReaped() throws {
        let quick = try ChildProcess.start("/bin/true", [])
        #expect(quick.removal.isRegistered)
        let clock = ContinuousClock(), deadline = clock.now + .seconds(10)
        while quick.isRunning, clock.now < deadline { usleep(5_000) }
        #expect(!quick.isRunning && !quick.removal.isRegistered, "reaped by isRunning")
        let slow = try ChildProcess.start("/bin/sleep", ["30"])
        #expect(slow.isRunning && slow.removal.isRegistered)
        #expect(slow.stop(signal: SIGTERM) == 128 + SIGTERM && !slow.removal.isRegistered, "reaped by stop")
    }
}
