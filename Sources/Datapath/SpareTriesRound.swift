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
/// (under the lock again). Only a round marks, and the keeper's own lock lets one round run
/// per root at a time, so marks found when a round begins are a killed round's: settled first.
public final class SpareTriesRound {
    /// Free indexes marked arriving, each with the empty trie it gets.
    public private(set) var arriving: [(index: TrieIndex, trie: BPFMap)] = []
    /// Tries no record names, marked cooling: the first `recycled` become spares, the rest are deleted.
    public private(set) var cooling: [(index: TrieIndex, trie: BPFMap)] = []
    private var recycled = 0
    /// Cooling tries per round at most: a burst of deletions is worked off over several rounds.
    static let coolingPerRound = 64

    public var isEmpty: Bool { arriving.isEmpty && cooling.isEmpty }

    /// Under the root's lock: settles a killed round's marks, then marks every trie no record
    /// names (up to `coolingPerRound`) as cooling, and as many free indexes as arriving as it
    /// takes, with the cooling ones, to have `target` spares. Reads `policy_digests` once and
    /// looks up in `policies` only the indexes whose records say a trie may be there.
    public init(_ datapath: Datapath, spares target: Int) throws {
        var records = try datapath.trieRecords()
        try datapath.settleKeeperMarks(&records)
        let named = try datapath.namedTries()
        var spares = 0
        for (index, record) in records.sorted(by: { $0.key < $1.key }) where !named.contains(index) {
            if record.role == .spare { spares += 1; continue }  // settled: a cooling mark left is a killed round's
            guard cooling.count < Self.coolingPerRound else { continue }
            guard let id = try datapath.trieID(at: index), let trie = try? BPFMap(id: id) else {
                try datapath.forgetDigest(at: index)  // its trie is gone
                continue
            }
            try datapath.policyDigests.update(key: index.key, value: TrieDigestRecord(mapID: id, role: .cooling).encode())
            cooling.append((index, trie))
        }
        let missing = max(0, target - spares)
        recycled = min(cooling.count, missing)
        var needed = missing - recycled
        for index in TrieIndex.all.reversed() where needed > 0 && records[index] == nil && !named.contains(index) {
            guard try datapath.trieID(at: index) == nil else { continue }  // an orphan without a record: reconcile's
            let trie = try Datapath.makeEmptyTrie()
            try datapath.policyDigests.update(key: index.key, value: TrieDigestRecord(mapID: try trie.info().id, role: .arriving).encode())
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
            guard let record = try datapath.policyDigests.lookup(key: index.key).flatMap(TrieDigestRecord.decode),
                  record.mapID == id, record.role == .arriving || record.role == .cooling else { continue }
            try datapath.policyDigests.update(key: index.key, value: TrieDigestRecord(mapID: id, role: .spare).encode())
            made += 1
        }
        for (index, _) in cooling.dropFirst(recycled) { try datapath.forgetDigest(at: index) }
        return made
    }
}

extension Datapath {
    /// Settles the marks of a keeper's round that did not finish (only while no round runs: the
    /// caller holds the keeper's lock and the root's): an arriving trie that made it into
    /// `policies` is a spare, any other mark, and a spare whose trie is gone, is dropped (a
    /// cooling trie is then one no record names, which reconcile deletes; `records`, of
    /// `trieRecords`, keeps its mark, so that a round cools it again). Returns how many it settled.
    @discardableResult
    public func settleKeeperMarks(_ records: inout [TrieIndex: TrieDigestRecord]) throws -> Int {
        var settled = 0
        for (index, record) in records {
            guard let role = record.role else { continue }
            let present = try trieID(at: index) == record.mapID
            switch role {
            case .spare where present: continue
            case .arriving where present:
                records[index] = TrieDigestRecord(mapID: record.mapID, role: .spare)
                try policyDigests.update(key: index.key, value: TrieDigestRecord(mapID: record.mapID, role: .spare).encode())
            case .cooling where present:
                try forgetDigest(at: index)  // an orphan now; `records` keeps the mark for a round to cool it again
            default:
                records[index] = nil
                try forgetDigest(at: index)
            }
            settled += 1
        }
        return settled
    }

    /// `settleKeeperMarks` for a caller that has not read the records (reconcile).
    @discardableResult
    public func settleKeeperMarks() throws -> Int {
        var records = try trieRecords()
        return try settleKeeperMarks(&records)
    }
}
