import Glibc

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
}
