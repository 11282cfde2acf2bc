import CommandTree
import Glibc
import HostKit

/// Set by SIGINT/SIGTERM: long-running commands finish what they are doing and exit 0.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

/// Set by SIGHUP: a command writing a file opens it anew (logrotate moved it).
nonisolated(unsafe) var reopenRequested: sig_atomic_t = 0

enum StopSignals {
    /// Routes SIGINT and SIGTERM to `stopRequested`, unblocking them first: a
    /// parent may have blocked them, and children inherit the mask.
    static func install() {
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
        var stops = sigset_t()
        sigemptyset(&stops)
        sigaddset(&stops, SIGINT)
        sigaddset(&stops, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &stops, nil)
    }

    /// Routes SIGHUP to `reopenRequested` (logrotate's convention) instead of ending the process.
    static func installReopen() {
        signal(SIGHUP) { _ in reopenRequested = 1 }
        var hangup = sigset_t()
        sigemptyset(&hangup)
        sigaddset(&hangup, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &hangup, nil)
    }

    /// For a command that makes throwaway namespaces, pins or servers (the benchmarks, the demo):
    /// SIGINT, SIGTERM and SIGHUP remove them (``Interruption``), say so in one line and end the
    /// process with 128 + the signal. What fails meanwhile because of the stop (the terminal's SIGINT
    /// reaches the children too) leaves the word to it.
    static func removingWhatItMakes<T>(_ context: CommandContext, _ body: () throws -> T) throws -> T {
        nonisolated(unsafe) let context = context
        try Interruption.handleStops { signal in
            let name = [SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP"][signal] ?? "signal \(signal)"
            context.reportError("stopped by \(name); removed the namespaces, pins and processes '\(context.commandPath)' had made",
                                exitCode: 128 + signal)
        }
        do {
            return try body()
        } catch {
            if Interruption.stopping { Interruption.awaitStop() }
            throw error
        }
    }
}
