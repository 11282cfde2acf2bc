import BPFKit
import Datapath
import Foundation
import HostKit

/// Keeps spare tries ready under one pin root while it runs (`loader serve`): after the
/// changes it is woken for or sees in the node's counters, and every second, it runs
/// `SpareTriesRound`s until there is nothing left to do, on a thread of its own. While a keeper runs, a change (served, or a
/// command's own process) leaves the tries it lets go to it (`TrieRecycling.keeper`), so
/// neither of the two grace periods a change of a pod's policy used to wait is on the
/// caller's path while spares last.
///
/// One keeper per root: it holds `maps/` of the root with `flock(2)` for as long as it runs
/// (the kernel drops it when the process dies; a second keeper waits for it), which is also
/// how a change sees that one runs. Rounds take the root's own lock, as every change does,
/// only to mark and to finish.
public final class TrieKeeper: @unchecked Sendable {
    /// Spares kept by default: a burst of this many changes of policy waits no grace period.
    public static let defaultSpares = Datapath.sparesKept
    /// A round even when not woken: changes by other processes also let tries go.
    static let idleRound = 1.0
    /// How often a waiting keeper looks whether a change took a revision or a pod id (another
    /// process's commands cannot wake it): one map lookup.
    static let watchInterval = 0.02
    /// A round waits for a pause this long in the served requests (at most `idleRound`): its
    /// locked steps would hold up a request that arrives meanwhile, and spares last a burst.
    static let pause: UInt64 = 10_000_000

    public let root: PinRoot
    public let spares: Int
    private let report: @Sendable (String) -> Void
    private let condition = NSCondition()
    private var woken = true, stopping = false, running = false
    /// Held by a served change (`inTurn`) and by a round's locked steps: the root's flock is polled
    /// with growing pauses, so a change waiting on it for a round could sleep past the round's end.
    private let turn = NSLock()
    /// When the last served request ended (monotonic ns; under `condition`).
    private var lastTurnEnded: UInt64 = 0
    private let finished = DispatchSemaphore(value: 0)

    /// `report` hears a failed round (once per distinct message in a row).
    public init(root: PinRoot, spares: Int = defaultSpares, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.root = root
        self.spares = spares
        self.report = report
    }

    /// Whether a keeper, in this process or another, holds `root`.
    static func isKeeping(_ root: PinRoot) -> Bool {
        FileLock.isHeld(directory: root.appending("maps"))
    }

    public func start() {
        running = true
        Thread { [self] in loop() }.start()
    }

    /// Runs `body` (a served command) in turn with the rounds' locked steps, then asks for rounds
    /// if it may have changed a pod's policy (`wakes`).
    public func inTurn<T>(wakes: Bool, _ body: () throws -> T) rethrows -> T {
        defer {
            condition.lock()
            lastTurnEnded = HostClock.monotonic.nanoseconds
            woken = woken || wakes
            condition.signal()
            condition.unlock()
        }
        return try turn.withLock(body)
    }

    /// Stops after the round in flight and lets the root go.
    public func stop() {
        guard running else { return }
        running = false
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        finished.wait()
    }

    private func loop() {
        var held: FileLock?, lastFailure: String?
        var watched: (state: LoaderState, counters: [UInt8]?)?
        while true {
            condition.lock()
            let idleUntil = Date(timeIntervalSinceNow: Self.idleRound)
            while !woken && !stopping && Date() < idleUntil {
                _ = condition.wait(until: min(idleUntil, Date(timeIntervalSinceNow: Self.watchInterval)))
                if let seen = watched, let now = try? seen.state.countersRecord(), now != seen.counters { woken = true }
            }
            let giveUp = HostClock.monotonic.nanoseconds + UInt64(Self.idleRound * 1e9)
            while !stopping {
                let quiet = lastTurnEnded + Self.pause, now = HostClock.monotonic.nanoseconds
                if now >= quiet || now >= giveUp { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(min(quiet, giveUp) - now) / 1e9))
            }
            woken = false
            let stop = stopping
            condition.unlock()
            if stop { break }
            // The root's maps/ made anew (reset, init) is another root to hold; another keeper's is left to it.
            if held?.namesItsPath != true {
                held = try? FileLock.acquire(directory: root.appending("maps"), mode: .exclusive, timeout: 0)
                watched = nil
            }
            guard held != nil else { continue }
            if watched == nil { watched = (try? LoaderState.open(pinnedUnder: root.path)).map { ($0, nil) } }
            if let state = watched?.state { watched = (state, try? state.countersRecord()) }
            do {
                while try round() > 0 && !isStopping {}
                lastFailure = nil
            } catch {
                let message = "keeping spare tries under \(root.path): \(error)"
                if message != lastFailure { report(message) }
                lastFailure = message
            }
        }
        withExtendedLifetime(held) {}
        finished.signal()
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    /// One round (the caller holds the keeper's lock); returns how many tries it worked on
    /// (0: nothing to do, or the root is not initialized).
    private func round() throws -> Int {
        let begun: (Datapath, SpareTriesRound)
        do {
            begun = try turn.withLock {
                try Loader.whileHoldingLock(root: root) {
                    let datapath = try Datapath.open(pinnedUnder: root.path)
                    return (datapath, try SpareTriesRound(datapath, spares: spares))
                }
            }
        } catch LoaderError.notInitialized {
            return 0
        }
        let (datapath, round) = begun
        guard !round.isEmpty else { return 0 }
        try round.waitOut(datapath)
        try turn.withLock { try Loader.whileHoldingLock(root: root) { _ = try round.finish(datapath) } }
        return round.arriving.count + round.cooling.count
    }

    /// Settles what a killed keeper left marked, unless a keeper holds `root` (reconcile; the
    /// caller holds the root's lock).
    static func settleMarksUnlessKept(_ root: PinRoot, _ datapath: Datapath) throws {
        guard let held = try? FileLock.acquire(directory: root.appending("maps"), mode: .exclusive, timeout: 0) else { return }
        defer { withExtendedLifetime(held) {} }
        try datapath.settleKeeperMarks()
    }
}
