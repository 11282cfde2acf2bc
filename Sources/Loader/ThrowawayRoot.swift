import BPFKit
import HostKit

/// A pin root a benchmark or the demo makes for itself: reset once done, and also when a stop
/// signal ends the process first (``Interruption``); then the root's lock may be this process's
/// own, held by the work the stop cut short, and the pins go without it.
public final class ThrowawayRoot: Sendable {
    public let root: PinRoot
    private let removal: Interruption.Removal

    public init(_ path: String) throws {
        let root = try PinRoot(path)
        self.root = root
        removal = Interruption.register {
            if (try? Loader.reset(root: root, waitingUpTo: 0.5)) == nil { Loader.discardThrowaway(root: root) }
        }
    }

    /// Removes the pods' filters and every pin. Once.
    public func remove() { removal.run() }

    /// Leaves the root in place (`demo --keep`).
    public func keep() { removal.forget() }
}
