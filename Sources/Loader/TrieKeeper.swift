import BPFKit
import Datapath
import Foundation
import HostKit
import Synchronization

/// Keeps spare tries ready under one pin root while it runs (`loader serve`): after the
/// changes it is woken for, and every few seconds, it runs `SpareTriesRound`s until there is
/// nothing left to do, on a thread of its own. A change in this process leaves the tries it
/// lets go to the keeper (`Datapath.keeperRecycles`), so neither of the two grace periods a
/// change of a pod's policy used to wait is on the caller's path while spares last.
///
/// One keeper works on a root at a time: rounds hold `maps/` of the root with `flock(2)`
/// (the kernel drops it when the process dies), and take the root's own lock, as every
/// change does, only to mark and to finish.
public final class TrieKeeper: @unchecked Sendable {
    /// Spares kept by default: a burst of this many changes of policy waits no grace period.
    public static let defaultSpares = 8
    /// A round even when not woken: changes by other processes also let tries go.
    static let idleRound = 5.0
    private static let keeping = Mutex<[String: Int]>([:])

    public let root: PinRoot
    public let spares: Int
    private let report: @Sendable (String) -> Void
    private let condition = NSCondition()
    /// Held by a served change (`inTurn`) and by a round's locked steps: the root's flock is polled
    /// with growing pauses, so a change waiting on it for a round could sleep past the round's end.
    private let turn = NSLock()
    private var woken = true, stopping = false, running = false
    private let finished = DispatchSemaphore(value: 0)

    /// `report` hears a failed round (once per distinct message in a row).
    public init(root: PinRoot, spares: Int = defaultSpares, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.root = root
        self.spares = spares
        self.report = report
    }

    /// Whether a keeper in this process recycles `root`'s tries.
    static func isKeeping(_ root: PinRoot) -> Bool {
        keeping.withLock { ($0[root.path] ?? 0) > 0 }
    }

    public func start() {
        Self.keeping.withLock { $0[root.path, default: 0] += 1 }
        running = true
        Thread { [self] in loop() }.start()
    }

    /// Runs `body` (a served command) in turn with the rounds' locked steps, then asks for rounds
    /// if it may have changed a pod's policy (`wakes`).
    public func inTurn<T>(wakes: Bool, _ body: () throws -> T) rethrows -> T {
        defer { if wakes { wake() } }
        return try turn.withLock(body)
    }

    /// Asks for rounds now (after a change).
    public func wake() {
        condition.lock()
        woken = true
        condition.signal()
        condition.unlock()
    }

    /// Stops after the round in flight; changes in this process delete what they let go again.
    public func stop() {
        guard running else { return }
        running = false
        Self.keeping.withLock { $0[root.path, default: 1] -= 1 }
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        finished.wait()
    }

    private func loop() {
        var lastFailure: String?
        while true {
            condition.lock()
            if !woken && !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: Self.idleRound)) }
            woken = false
            let stop = stopping
            condition.unlock()
            if stop { break }
            do {
                while try keepOnce() > 0 && !isStopping {}
                lastFailure = nil
            } catch {
                let message = "keeping spare tries under \(root.path): \(error)"
                if message != lastFailure { report(message) }
                lastFailure = message
            }
        }
        finished.signal()
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    /// One round now; returns how many tries it worked on (0: nothing to do, or another keeper
    /// holds the root, or the root is not initialized).
    @discardableResult
    public func keepOnce() throws -> Int {
        guard root.exists, let held = Self.keeperLock(root) else { return 0 }
        defer { withExtendedLifetime(held) {} }
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

    /// The keeper's lock on `root`, if no keeper holds it.
    static func keeperLock(_ root: PinRoot) -> FileLock? {
        try? FileLock.acquire(directory: root.appending("maps"), mode: .exclusive, timeout: 0)
    }

    /// Settles what a killed keeper left marked, unless a keeper is at work on `root` (reconcile;
    /// the caller holds the root's lock).
    static func settleMarksUnlessKept(_ root: PinRoot, _ datapath: Datapath) throws {
        guard let held = keeperLock(root) else { return }
        defer { withExtendedLifetime(held) {} }
        try datapath.settleKeeperMarks()
    }
}
