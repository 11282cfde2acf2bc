import HostKit
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
}
