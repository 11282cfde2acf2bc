import BPFKit
import DatapathModel
import Foundation
import Glibc
import HostKit

/// Moves the pods of a root that attaches tc-then-tcx from their filters onto tcx links once they have
/// stayed `after` seconds (`loader serve`, on a thread of its own). A pod so attaches as cheaply as a
/// filter (the agent's call waits for no RCU grace period, ~15–20 ms a link here) and, once it stays,
/// its packets pass no classifier. The links are made without the root's lock (`Loader.makeLinks`),
/// running the programs the filters run, ahead of them; then, in turn with the served requests, they
/// are pinned and the filters removed under it (`Loader.adoptLinks`). A pod detached, moved or attached
/// anew meanwhile keeps what it has, and its wait starts over.
public final class LinkMover: @unchecked Sendable {
    /// How long a pod stays on its filters by default: pods that come and go within it never pay for links.
    public static let defaultAfter = 10.0
    /// How often the mover looks at the root's pods.
    static let interval = 1.0

    public let root: PinRoot
    /// Seconds a pod stays on its filters before it moves.
    public let after: Double
    private let keeper: TrieKeeper?
    private let report: @Sendable (String) -> Void
    /// Pods on filters by id, as first seen, with when (monotonic ns); the failure last reported for each.
    private var seen: [UInt32: (registration: PodRegistration, since: UInt64)] = [:]
    private var failures: [UInt32: String] = [:]
    private var running = false
    /// Set by `stop` (under `stopLock`), which also wakes the mover from its wait between passes.
    private var stopping = false
    private let stopLock = NSLock(), wake = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)

    /// Locked steps take turns with `keeper`'s served requests when given; `report` hears a failed
    /// move (once per pod and message).
    public init(root: PinRoot, after: Double = defaultAfter, keeper: TrieKeeper? = nil, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.root = root
        self.after = after
        self.keeper = keeper
        self.report = report
    }

    public func start() {
        running = true
        Thread { [self] in loop() }.start()
    }

    /// Stops after the move in flight.
    public func stop() {
        guard running else { return }
        running = false
        stopLock.withLock { stopping = true }
        wake.signal()
        finished.wait()
    }

    private func loop() {
        while wake.wait(timeout: .now() + Self.interval) == .timedOut { _ = try? pass() }
        finished.signal()
    }

    /// One look: moves every pod that has stayed on filters `after` seconds; returns the pods moved.
    /// A pod that did not move (it failed, reported, or a change under the lock decided otherwise) is
    /// tried again `after` seconds later.
    @discardableResult
    public func pass() throws -> [PodReference] {
        // The state maps alone, every second; the datapath's programs only once a pod is due.
        let onFilters: [UInt32: PodRegistration]
        do {
            onFilters = try Loader.podsOnFilters(root, LoaderState.open(pinnedUnder: root.path))
        } catch LoaderError.notInitialized {
            seen = [:]
            return []
        }
        let now = HostClock.monotonic.nanoseconds
        var loader: Loader?
        seen = seen.filter { onFilters[$0.key] == $0.value.registration }
        failures = failures.filter { seen[$0.key] != nil }
        var moved: [PodReference] = []
        for (podID, registration) in onFilters.sorted(by: { $0.key < $1.key }) where !isStopping {
            let since = seen[podID]?.since ?? now
            seen[podID] = (registration, since)
            guard Double(now - since) >= after * 1e9 else { continue }
            // Not moved (something decided otherwise under the lock, or it failed): the wait starts over.
            seen[podID] = (registration, now)
            do {
                let opened = try loader ?? Loader(root: root)
                loader = opened
                if try move(podID: podID, registration, opened) { moved.append(registration.pod) }
                failures[podID] = nil
            } catch {
                // tcx takes a program once per hook: another process made this pod's link meanwhile.
                let why = (error as? SystemError)?.errno == EEXIST
                    ? "its hook runs netfence's program through a link another process made (is a second 'loader serve' moving pods on this root?)"
                    : "\(error)"
                let message = "moving pod \(registration.pod) onto tcx links: \(why)"
                if failures[podID] != message { report(message) }
                failures[podID] = message
            }
        }
        return moved
    }

    /// A server stopping waits for the move in flight only, not for the pods after it.
    private var isStopping: Bool { stopLock.withLock { stopping } }

    private func move(podID: UInt32, _ registration: PodRegistration, _ loader: Loader) throws -> Bool {
        let links = try loader.makeLinks(podID: podID, for: registration)
        var handedOver = false  // from then on adoptLinks answers for every link
        func adopt() throws -> Bool {
            let writer = try Loader.openForChanges(root: root)
            handedOver = true
            return try writer.adoptLinks(links, podID: podID, for: registration)
        }
        do {
            return try keeper.map { try $0.inTurn(wakes: false, adopt) } ?? adopt()
        } catch {
            if !handedOver { for link in links { try? link.detach() } }  // the lock was not had: nothing pinned them
            throw error
        }
    }
}
