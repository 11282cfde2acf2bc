import Glibc

/// Other processes, as far as this one can see them.
public enum ProcessStatus {
    /// Whether `pid` names a live process (signal 0: EPERM still means it exists).
    public static func isRunning(_ pid: pid_t) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }
}
