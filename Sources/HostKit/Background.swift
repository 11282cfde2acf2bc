import Foundation

/// Runs `body` on a thread of its own; `result()` waits for it to finish. For work that blocks
/// (a child process, a socket) beside other such work: two measurements at the same time.
public final class Background<Value>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: Result<Value, Error>?

    public init(_ body: @escaping () throws -> Value) {
        // The thread is the only writer, and `result()` reads only after it signalled.
        nonisolated(unsafe) let body = body
        Thread { [self] in
            value = Result { try body() }
            done.signal()
        }.start()
    }

    /// What `body` returned or threw, once it finished (asked again, the same).
    public func result() throws -> Value {
        done.wait()
        done.signal()  // the next call does not wait for a second signal that never comes
        return try value!.get()
    }
}
