import BPFKit
import DatapathModel
import Glibc
import HostKit

/// One round of a keeper of spare tries (`loader serve`, docs/loader.md). Every write to
/// `policies` waits for an RCU grace period, so a change that inserted a trie for a new
/// policy and deleted the one it let go waited two. A keeper keeps empty tries in
/// `policies` that a change fills instead (`TrieRole.spare`), and turns the tries changes
/// let go into spares once a grace period has passed since no record named them: then no
/// packet can still reach them through an old record.
///
/// Three steps, so the grace period is waited without the root's lock: `init` marks the
/// indexes the round works on (under the lock), `waitOut` writes `policies` and waits
/// (without it: changes go on, and skip marked indexes), `finish` makes spares of them
/// (under the lock again). The keeper's own lock lets one round run per root at a time, so
/// marks found when a round begins are a killed round's, or cooling tries commands marked while
/// no keeper ran (`TrieRecycling.onNextWait`); `init` says what becomes of them.
public final class SpareTriesRound {
    /// Free indexes marked arriving, each with the empty trie it gets.
    public private(set) var arriving: [(index: TrieIndex, trie: BPFMap)] = []
    /// Tries no record names, marked cooling: the first `recycled` become spares, the rest are deleted.
    public private(set) var cooling: [(index: TrieIndex, trie: BPFMap)] = []
    private var recycled = 0
    /// Cooling tries per round at most: a burst of deletions is worked off over several rounds.
    static let coolingPerRound = 64

    public var isEmpty: Bool { arriving.isEmpty && cooling.isEmpty }

    /// Under the root's lock: marks every trie no record names and no spare is (up to
    /// `coolingPerRound`) as cooling, and as many free indexes as arriving as it takes, with the
    /// cooling ones, to have `target` spares. Of the marks found, an arriving trie that made it
    /// into `policies` counts as a spare, a cooling one is cooled again, and one at a free index
    /// is written over. Reads only the tries in `policies` and their records.
    public init(_ datapath: Datapath, spares target: Int) throws {
        let present = try datapath.presentTries(), named = try datapath.namedTries()
        var spares = 0
        for (index, trie) in present.sorted(by: { $0.key < $1.key }) where !named.contains(index) {
            if let record = trie.record, record.mapID == trie.id, record.role == .spare || record.role == .arriving {
                if record.role == .arriving { try datapath.writeRecord(TrieDigestRecord(mapID: trie.id, role: .spare), at: index) }
                spares += 1
                continue
            }
            guard cooling.count < Self.coolingPerRound, let map = try? BPFMap(id: trie.id) else { continue }
            try datapath.writeRecord(TrieDigestRecord(mapID: trie.id, role: .cooling), at: index)
            cooling.append((index, map))
        }
        let missing = max(0, target - spares)
        recycled = min(cooling.count, missing)
        var needed = missing - recycled
        for index in TrieIndex.all.reversed() where needed > 0 && present[index] == nil && !named.contains(index) {
            let trie = try Datapath.makeEmptyTrie()
            try datapath.writeRecord(TrieDigestRecord(mapID: try trie.info().id, role: .arriving), at: index)
            arriving.append((index, trie))
            needed -= 1
        }
    }

    /// Without the lock: inserts the arriving tries in one batch (they need no wait: an index is
    /// free once its trie was deleted, and a delete waits for a grace period). Then writes the
    /// first cooling trie to be recycled back where it is, which changes nothing a packet sees: the
    /// kernel waits one grace period after a single update of `policies` (after a batch only from
    /// 6.8), and then no packet reads a cooling trie through a record from before it was let go.
    /// Then empties those, and deletes the other cooling tries (a grace period each).
    public func waitOut(_ datapath: Datapath) throws {
        let kept = cooling.prefix(recycled)
        try datapath.policies.setInners(arriving.map { (key: $0.index.key, inner: $0.trie) })
        if let first = kept.first { try datapath.policies.setInner(key: first.index.key, to: first.trie) }
        for (_, trie) in kept {
            for key in try trie.keys() { try trie.delete(key: key) }  // nothing writes a cooling trie: one pass empties it
        }
        for (index, _) in cooling.dropFirst(recycled) { try datapath.policies.delete(key: index.key) }
    }

    /// Under the lock again: the round's tries whose marks are still its own become spares; the
    /// deleted ones' records are cleared. Returns the spares it made.
    @discardableResult
    public func finish(_ datapath: Datapath) throws -> Int {
        var made = 0
        for (index, trie) in arriving + cooling.prefix(recycled) {
            let id = try trie.info().id
            guard let record = try datapath.record(at: index), record.mapID == id, record.role == .arriving || record.role == .cooling else { continue }
            try datapath.writeRecord(TrieDigestRecord(mapID: id, role: .spare), at: index)
            made += 1
        }
        for (index, _) in cooling.dropFirst(recycled) { try datapath.forgetDigest(at: index) }
        return made
    }
}

/// What a change does with the tries it lets go (no record names them any more): each may still
/// be read through a record from before the change until an RCU grace period has passed.
public enum TrieRecycling: Sendable {
    /// Deletes them, a grace period each (a datapath used on its own).
    case delete
    /// Leaves them where they are for the keeper of `loader serve` (it holds the root's `maps/`),
    /// which recycles them without the root's lock.
    case keeper
    /// Marks them cooling, up to `Datapath.sparesKept` with the spares (deletes the rest); the
    /// next change that waits a grace period anyway (it inserts a trie) empties them and makes
    /// them spares: commands while no keeper runs.
    case onNextWait
}

extension Datapath {
    /// A trie in `policies`: its map id, and its index's record (nil: none written).
    typealias PresentTrie = (id: UInt32, record: TrieDigestRecord?)

    /// Every trie in `policies`, by index, with its record (nil: none written): one batch read of
    /// `policies` (the kernel skips empty indexes; `policy_digests` is a plain array it would
    /// copy whole) and a lookup per trie.
    func presentTries() throws -> [TrieIndex: Datapath.PresentTrie] {
        var ids: [(TrieIndex, UInt32)] = []
        try policies.forEachBatch { batch in
            for entry in 0..<batch.count {
                guard let index = UInt16(exactly: batch.key(entry).loadUnaligned(as: UInt32.self)).flatMap(TrieIndex.init),
                      case let id = batch.value(entry).loadUnaligned(as: UInt32.self), id != 0 else { continue }
                ids.append((index, id))
            }
        }
        var tries: [TrieIndex: Datapath.PresentTrie] = [:]
        for (index, id) in ids { tries[index] = (id, try record(at: index)) }
        return tries
    }

    /// The role of each trie in `policies` that has one (spares, and a keeper's marks), by index;
    /// none when `mapID` is given and is not this datapath's `policies` (a dump of another root's).
    public func trieRoles(ofPoliciesMap mapID: UInt32? = nil) throws -> [TrieIndex: TrieRole] {
        if let mapID, try policies.info().id != mapID { return [:] }
        return try presentTries().compactMapValues { trie in trie.record?.mapID == trie.id ? trie.record?.role : nil }
    }

    /// How many spares `policies` holds now.
    public func spareCount() throws -> Int {
        try trieRoles().values.filter { $0 == .spare }.count
    }

    /// The record of `index` in `policy_digests`; nil when none was written or it was cleared.
    func record(at index: TrieIndex) throws -> TrieDigestRecord? {
        try policyDigests.lookup(key: index.key).flatMap(TrieDigestRecord.decode)
    }

    func writeRecord(_ record: TrieDigestRecord, at index: TrieIndex) throws {
        try policyDigests.update(key: index.key, value: record.encode())
    }

    /// Every record of `policy_digests` written and not cleared, by index (the whole array: reconcile's).
    func trieRecords() throws -> [TrieIndex: TrieDigestRecord] {
        var records: [TrieIndex: TrieDigestRecord] = [:]
        try policyDigests.forEachBatch { batch in
            for entry in 0..<batch.count where batch.value(entry).loadUnaligned(as: UInt32.self) != 0 {  // map id 0: never written
                guard let index = UInt16(exactly: batch.key(entry).loadUnaligned(as: UInt32.self)).flatMap(TrieIndex.init),
                      let record = TrieDigestRecord.decode(Array(batch.value(entry))) else { continue }
                records[index] = record
            }
        }
        return records
    }

    /// Settles the marks a keeper's round left when it was killed (reconcile, while no keeper
    /// holds the root): an arriving trie that made it into `policies` is a spare; any other mark,
    /// and a spare whose trie is gone, is dropped (a cooling trie is then one no record names,
    /// which reconcile deletes). Reads `policy_digests` whole. Returns how many it settled.
    @discardableResult
    public func settleKeeperMarks() throws -> Int {
        var settled = 0
        for (index, record) in try trieRecords() {
            guard let role = record.role else { continue }
            let present = try trieID(at: index) == record.mapID
            switch role {
            case .spare where present: continue
            case .arriving where present: try writeRecord(TrieDigestRecord(mapID: record.mapID, role: .spare), at: index)
            default: try forgetDigest(at: index)
            }
            settled += 1
        }
        return settled
    }
}
