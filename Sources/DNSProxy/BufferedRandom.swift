import Glibc

/// The kernel's CSPRNG drawn 256 bytes at a time (getentropy's most): a query's ID, socket and letter
/// case cost one getrandom call per 32 queries rather than one each (a call a query was 1–2 % of the
/// proxy's CPU). Words are handed out once each, in order, and never again.
struct BufferedRandom: RandomNumberGenerator {
    private var words = [UInt64](repeating: 0, count: 32)
    private var used = 32

    mutating func next() -> UInt64 {
        if used == words.count { refill() }
        defer { used += 1 }
        return words[used]
    }

    private mutating func refill() {
        // getentropy retries EINTR itself; should it fail, the words come from the standard library's generator, as before.
        if words.withUnsafeMutableBytes({ getentropy($0.baseAddress, $0.count) }) != 0 {
            var system = SystemRandomNumberGenerator()
            for index in words.indices { words[index] = system.next() }
        }
        used = 0
    }
}
