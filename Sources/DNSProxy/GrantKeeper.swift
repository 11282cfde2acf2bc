import BPFKit
import Datapath
import DatapathModel
import DNS
import Glibc
import HostKit
import Synchronization

/// The policy side of the proxy: which of a pod's domain patterns allow a name, and
/// the grants it writes before an answer is released. The proxy passes in the pod's record
/// as of netfence's last change of pods; the patterns of its live slot are read again
/// whenever the record's revision moved (an apply writes the new slot's rules
/// before it flips the record), so a policy change counts from the next query on. Grants it
/// read or wrote are kept while netfence changed no grant (`generations`): a repeated answer
/// reads none. The proxy's event loops share one keeper: its caches and every read-modify-write
/// of a grant hold a lock (two loops extending one grant must not drop each other's pattern).
/// (`@unchecked`: of the datapath it calls only map lookups and writes, which the kernel serializes.)
public final class GrantKeeper: @unchecked Sendable {
    /// What a query may do.
    public enum Admission: Equatable, Sendable {
        /// Not a pod with domain rules (the node, a pod without them): forwarded, nothing granted.
        case unrestricted
        /// A pod with domain rules, for a name these patterns (ids) of its live policy allow.
        case allowed(podID: UInt32, patterns: [UInt64])
        /// A pod with domain rules, for a name none of its patterns allows.
        case refused(podID: UInt32)
    }

    public let datapath: Datapath
    /// TTLs are clamped into this range (seconds) before they become expiries.
    public let ttlBounds: ClosedRange<UInt32>
    /// How long a pattern stays in a grant after it expired: flows established under it
    /// survive a policy change (re-evaluated) only while it is there.
    public let retentionNanoseconds: UInt64
    /// The pattern ids of each pod's live slot, as of a revision.
    private let patternsByPod = Mutex<[UInt32: (revision: UInt32, patterns: Set<UInt64>)]>([:])
    /// The grants read or written since netfence last changed one, held while a grant is read, changed
    /// and written back.
    private let knownGrants = Mutex(KnownGrants())

    struct KnownGrants {
        struct Key: Hashable {
            let podID: UInt32
            let address: IPAddress
        }

        /// The count of grant changes `grants` were read at (nil: none kept).
        var generation: UInt64?
        var grants: [Key: DomainGrant] = [:]
        /// Kept at most: a node's grants, each read once per change of any grant, would not need more.
        static let limit = 4096

        /// The grants as of `generation`: emptied when netfence changed a grant since they were read.
        mutating func current(at generation: UInt64) {
            guard self.generation != generation || grants.count >= Self.limit else { return }
            grants.removeAll(keepingCapacity: true)
            self.generation = generation
        }
    }

    public init(datapath: Datapath, ttlBounds: ClosedRange<UInt32>, retentionNanoseconds: UInt64) {
        self.datapath = datapath
        self.ttlBounds = ttlBounds
        self.retentionNanoseconds = retentionNanoseconds
    }

    /// Decides a query for `name` from `pod`, the record of the host interface it arrived
    /// through (nil: not a pod's interface).
    public func admit(pod: PodRecord?, name: DomainName) throws -> Admission {
        guard let pod, pod.hasDomainRules else { return .unrestricted }
        let live: Set<UInt64>
        if let known = patternsByPod.withLock({ $0[pod.podID] }), known.revision == pod.revision {
            live = known.patterns
        } else {
            live = Set(try datapath.domainRules(podID: pod.podID, slot: pod.slot).keys)
            patternsByPod.withLock { $0[pod.podID] = (pod.revision, live) }
        }
        let patterns = name.matchingPatternIDs.filter(live.contains)
        return patterns.isEmpty ? .refused(podID: pod.podID) : .allowed(podID: pod.podID, patterns: patterns)
    }

    /// Grants the pod every address of `resolved` under `patterns` until now plus its TTL
    /// (clamped); returns the TTL the answer may carry: no record the pod sees outlives its
    /// grant. A grant that already runs within a second of that is left as it is (one
    /// write fewer per repeated answer; no read either while no grant changed since it was read) and
    /// the answer's TTL is cut to what it has left. Throws when a grant cannot be written.
    public func grant(podID: UInt32, patterns: [UInt64], resolved: [DNSMessage.Resolved]) throws -> UInt32 {
        let now = HostClock.monotonic.nanoseconds
        var answerTTL = ttlBounds.upperBound
        for entry in resolved {
            let ttl = min(max(entry.ttl, ttlBounds.lowerBound), ttlBounds.upperBound)
            let address = entry.address.count == 4 ? IPAddress(ipv4: entry.address) : IPAddress(bytes: entry.address)
            let expires = now + UInt64(ttl) * 1_000_000_000
            /// Until when `grant` holds every one of `patterns`, if long enough that the answer needs no write.
            func runningLongEnough(_ grant: DomainGrant) -> UInt64? {
                let held = patterns.map { pattern in grant.patterns.first { $0.pattern == pattern }?.expiresNanoseconds ?? 0 }.min() ?? 0
                return held + 1_000_000_000 >= expires && held > now + 1_000_000_000 ? held : nil
            }
            let key = KnownGrants.Key(podID: podID, address: address)
            let held = try knownGrants.withLock { known -> UInt64? in
                // The count first: a change after it is read moves it again, and the grant is read anew next time.
                let generation = datapath.generations[DatapathGeneration.grants.rawValue]
                known.current(at: generation)
                // What is known is what the map holds: read only what is not.
                var grant = try known.grants[key] ?? datapath.grant(podID: podID, address: address)
                    ?? DomainGrant(podID: podID, address: address, patterns: [])
                if let held = runningLongEnough(grant) {
                    known.grants[key] = grant
                    return held
                }
                grant.patterns = merged(grant.patterns, adding: patterns, until: expires, now: now)
                try datapath.write(grant)
                // Kept only if this write was the one change since the count was read.
                if datapath.generations[DatapathGeneration.grants.rawValue] == generation &+ 1 {
                    known.generation = generation &+ 1
                    known.grants[key] = grant
                }
                return nil
            }
            answerTTL = min(answerTTL, held.map { UInt32(($0 - now) / 1_000_000_000) } ?? ttl)
        }
        return answerTTL
    }

    /// `existing` with each of `patterns` valid until at least `expires`, patterns long
    /// expired dropped, and at most `patternsPerGrant` kept (those valid longest).
    func merged(_ existing: [DomainGrant.Pattern], adding patterns: [UInt64], until expires: UInt64, now: UInt64) -> [DomainGrant.Pattern] {
        var result = existing.filter { $0.expiresNanoseconds &+ retentionNanoseconds > now }
        for pattern in patterns {
            if let index = result.firstIndex(where: { $0.pattern == pattern }) {
                result[index].expiresNanoseconds = max(result[index].expiresNanoseconds, expires)
            } else {
                result.append(DomainGrant.Pattern(pattern: pattern, expiresNanoseconds: expires))
            }
        }
        if result.count > DatapathLimits.patternsPerGrant {
            result = Array(result.sorted { $0.expiresNanoseconds > $1.expiresNanoseconds }.prefix(DatapathLimits.patternsPerGrant))
        }
        return result
    }

    /// Deletes grants whose every pattern expired longer than the retention ago; returns how many.
    @discardableResult
    public func collectExpired() throws -> Int {
        let now = HostClock.monotonic.nanoseconds
        var removed = 0
        for listed in try datapath.grants() where listed.patterns.contains(where: { $0.expiresNanoseconds &+ retentionNanoseconds <= now }) {
            // Read again under the lock: a loop may have extended it since the listing.
            try knownGrants.withLock { _ in
                guard let grant = try datapath.grant(podID: listed.podID, address: listed.address) else { return }
                let kept = grant.patterns.filter { $0.expiresNanoseconds &+ retentionNanoseconds > now }
                guard kept.count != grant.patterns.count else { return }
                if kept.isEmpty {
                    if try datapath.removeGrant(podID: grant.podID, address: grant.address) { removed += 1 }
                } else {
                    try datapath.write(DomainGrant(podID: grant.podID, address: grant.address, patterns: kept))
                }
            }
        }
        return removed
    }
}
