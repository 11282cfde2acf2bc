import Foundation
import Synchronization

/// What a command made for itself that must go when it is stopped half-way (Ctrl-C on a benchmark
/// or the demo): throwaway namespaces, pin roots, servers. Their makers register each removal; a
/// command that builds such things calls ``handleStops(_:)`` first, and from then on SIGINT, SIGTERM
/// and SIGHUP run every registered removal, newest first, on a thread of their own, and end the
/// process with 128 + the signal. A removal its owner runs is unregistered as it runs: each runs once.
/// In a process that never calls ``handleStops(_:)`` registrations are only bookkeeping.
public enum Interruption {
    /// One registered removal, until it runs.
    public final class Removal: Sendable {
        fileprivate let id: UInt64

        fileprivate init(id: UInt64) { self.id = id }

        /// Runs the removal now, unless a stop ran it already.
        public func run() { Interruption.run([id]) }

        /// Forgets the removal without running it: what it would remove stays on purpose.
        public func forget() { _ = Interruption.registered.withLock { $0.actions.removeValue(forKey: id) } }

        /// Whether a stop would still run it.
        var isRegistered: Bool { Interruption.registered.withLock { $0.actions[id] != nil } }
    }

    private struct Registry {
        var next: UInt64 = 0
        var actions: [UInt64: @Sendable () -> Void] = [:]
    }

    private static let registered = Mutex(Registry())
    /// Held while any removal runs, so a stop waits for one its owner is running and the owner
    /// for the stop's: the process never ends half-way through one.
    private static let removing = Mutex(())

    /// Registers `action` until ``Removal/run()`` or ``Removal/forget()``. It must not run other removals
    /// (they would wait for it); registering is fine (a child process it runs registers itself).
    public static func register(_ action: @escaping @Sendable () -> Void) -> Removal {
        Removal(id: registered.withLock { registry in
            registry.next += 1
            registry.actions[registry.next] = action
            return registry.next
        })
    }

    /// Registers the removal of files or folders (with what is in them) a command made for itself.
    public static func register(removingFiles paths: [String]) -> Removal {
        register { for path in paths { try? FileManager.default.removeItem(atPath: path) } }
    }

    /// Runs the removals `ids` names, or every one registered (newest first) until none is left.
    private static func run(_ ids: [UInt64]?) {
        removing.withLock { _ in
            while true {
                let actions = registered.withLock { registry in
                    let chosen = ids ?? registry.actions.keys.sorted(by: >)
                    return chosen.compactMap { registry.actions.removeValue(forKey: $0) }
                }
                actions.forEach { $0() }
                if ids != nil || actions.isEmpty { return }
            }
        }
    }

    /// Whether a stop signal came: what fails after it failed because of it (the terminal's SIGINT
    /// reaches the children too), and the process is ending.
    public static var stopping: Bool { stopSignal != 0 }

    /// Waits for the stop under way to end the process: a command that fails while stopping
    /// leaves the last word to it.
    public static func awaitStop() -> Never {
        while true { pause() }
    }

    /// From now on SIGINT, SIGTERM and SIGHUP remove everything registered, then call `stopped`
    /// with the signal (one line for the user) and end the process with 128 + the signal.
    public static func handleStops(_ stopped: @escaping @Sendable (Int32) -> Void) throws {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw SystemError("create", "a pipe for stop signals", errno: errno) }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        let readEnd = ends[0]
        signalPipe = ends[1]
        Thread {
            var signal: UInt8 = 0
            while read(readEnd, &signal, 1) < 0, errno == EINTR {}
            run(nil)
            stopped(Int32(signal))
            _exit(128 + Int32(signal))
        }.start()
        for stop in [SIGINT, SIGTERM, SIGHUP] {
            // Whichever thread takes the signal, the handler only writes its number (async-signal-safe).
            signal(stop) { number in
                stopSignal = number
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(signalPipe, &byte, 1)
            }
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, stop)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)  // a parent may have blocked it, and children inherit the mask
        }
    }
}

/// The write end the stop signals' handler writes to (set once, before the handler is installed),
/// and the signal that came: globals, since a C signal handler captures nothing.
nonisolated(unsafe) private var signalPipe: Int32 = -1
nonisolated(unsafe) private var stopSignal: sig_atomic_t = 0
