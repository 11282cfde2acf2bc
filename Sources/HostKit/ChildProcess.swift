import Glibc

/// Runs another program and waits for it, with posix_spawn and waitpid:
/// Foundation's Process notices an exit up to 50 ms late, which adds up over
/// the hundreds of `ip` calls a test run makes and would skew a benchmark.
public enum ChildProcess {
    public enum Output {
        /// Standard output and standard error, together, returned as text.
        case captured
        /// Standard output to /dev/null (as `> /dev/null`); standard error returned as text.
        case discarded
    }

    public struct Result: Sendable {
        /// The exit status, or 128 + the signal that ended it.
        public let status: Int32
        public let output: String
        /// Wall time from spawn to exit, in seconds.
        public var seconds: Double = 0
    }

    /// Runs `executable` with `arguments`, standard input from /dev/null.
    public static func run(_ executable: String, _ arguments: [String], output: Output = .captured) throws -> Result {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw SystemError("create a pipe for", executable, errno: errno) }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        // Other children started meanwhile must not hold the write end open.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch output {
        case .captured: posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        case .discarded: posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let started = BootClock.nanoseconds(CLOCK_MONOTONIC)
        let spawned = posix_spawn(&child, executable, &actions, nil, argv, environ)
        close(writeEnd)
        defer { close(readEnd) }
        guard spawned == 0 else { throw SystemError("run", executable, errno: spawned) }
        // Read to the end first: a child blocked on a full pipe would never exit.
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(readEnd, &chunk, chunk.count)
            if count > 0 { text += chunk[0..<count] } else if count == 0 || errno != EINTR { break }
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0, errno == EINTR {}
        let exited = status & 0x7f == 0
        return Result(status: exited ? (status >> 8) & 0xff : 128 + status & 0x7f, output: String(decoding: text, as: UTF8.self),
                      seconds: Double(BootClock.nanoseconds(CLOCK_MONOTONIC) - started) / 1e9)
    }
}

extension ChildProcess {
    /// A program started in the background (a server a test or benchmark runs beside it).
    public final class Running: @unchecked Sendable {
        public let processID: pid_t
        private var status: Int32?

        init(processID: pid_t) { self.processID = processID }

        /// Sends `signal` and waits for the exit; returns the status as `run` does. Once only.
        @discardableResult
        public func stop(signal: Int32 = SIGTERM) -> Int32 {
            if let status { return status }
            kill(processID, signal)
            var raw: Int32 = 0
            while waitpid(processID, &raw, 0) < 0, errno == EINTR {}
            let result = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + raw & 0x7f
            status = result
            return result
        }

        /// Whether it is still running (not exited, or exited and not yet waited for).
        public var isRunning: Bool {
            guard status == nil else { return false }
            var raw: Int32 = 0
            let reaped = waitpid(processID, &raw, WNOHANG)
            if reaped == processID { status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + raw & 0x7f }
            return status == nil
        }

        deinit { _ = stop(signal: SIGKILL) }
    }

    /// Starts `executable` with `arguments`, standard input, output and error on /dev/null.
    public static func start(_ executable: String, _ arguments: [String]) throws -> Running {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw SystemError("start", executable, errno: spawned) }
        return Running(processID: child)
    }
}
