import BPFKit
import DatapathModel
import Glibc
import HostKit

/// The datapath's tries during one change, shared by content: a pod whose
/// policy in a direction has the digest of a trie some record names reads that
/// trie; any other policy fills a spare (an empty trie kept in `policies` by
/// `loader serve`'s keeper or recycled by earlier commands) or gets a trie built
/// at a free index. Records flip to their
/// tries one by one (each pod atomically); `releaseUnnamed` then lets go of the
/// tries no record names any more. The kernel's reference counts keep a trie
/// alive while a packet still reads it.
///
/// Every write to `policies` waits for an RCU grace period (milliseconds), so a
/// change costs one write per distinct new policy that finds no spare, and one
/// per trie let go unless it is recycled (`TrieRecycling`); not one per pod: 250
/// pods selected by one object share one trie and one write.
public final class SharedTries {
    private let datapath: Datapath
    /// What the records named when the change began: not reused by it, since a
    /// packet that read an old record may still look its trie up.
    private let namedAtStart: Set<TrieIndex>
    /// The tries this change may hand out, by digest: those named at the start
    /// whose digest is known, and those it built.
    private var byDigest: [PolicyDigest: TrieIndex] = [:]
    private var built: Set<TrieIndex> = []
    private var searchFrom = 0
    /// The tries in `policies` when the change first needed one (spares among them), by index.
    private var present: [TrieIndex: Datapath.PresentTrie]?
    /// Tries this change built or filled.
    public var builtCount: Int { built.count }

    init(_ datapath: Datapath) throws {
        self.datapath = datapath
        namedAtStart = try datapath.namedTries()
        for index in namedAtStart {
            guard let record = try datapath.record(at: index), try datapath.trieID(at: index) == record.mapID else { continue }
            byDigest[record.digest] = index
        }
    }

    /// Where a trie holding `policy` is: one already there with its content, a spare filled now, or one built now.
    public func index(for policy: CompiledPolicy) throws -> TrieIndex {
        if let index = byDigest[policy.digest] { return index }
        if let index = try fillSpare(with: policy) { return index }
        // A free index: no trie there (one a change let go may still be read through an old record)
        // and no keeper's mark (an arriving one is about to get a trie).
        let present = try presentRead()
        while searchFrom < TrieIndex.count {
            guard let index = TrieIndex(rawValue: UInt16(searchFrom)) else { break }
            searchFrom += 1
            guard present[index] == nil, !namedAtStart.contains(index), !built.contains(index),
                  try datapath.record(at: index)?.role == nil else { continue }
            try write(policy, at: index)
            return index
        }
        throw SystemError("find a free index in policies for a pod's trie", "\(TrieIndex.count) tries are in use", errno: ENOSPC)
    }

    /// Writes `policy` at `index` unless this change wrote that index already: a `policies` map made
    /// anew under records that name their indexes (each index's pods had one policy when it was shared).
    public func restore(_ policy: CompiledPolicy, at index: TrieIndex) throws {
        guard !built.contains(index) else { return }
        try write(policy, at: index)
    }

    private func write(_ policy: CompiledPolicy, at index: TrieIndex) throws {
        let trie = try datapath.makeTrie(policy)
        try datapath.policies.setInner(key: index.key, to: trie)
        try datapath.writeRecord(TrieDigestRecord(mapID: try trie.info().id, digest: policy.digest), at: index)
        built.insert(index)
        byDigest[policy.digest] = index
        if datapath.recycling == .onNextWait { try recycleCooling() }
    }

    /// Marks `unnamed` cooling while the tries with a role stay at most `Datapath.sparesKept`; deletes
    /// the rest. When `Datapath.coolingKept` already cool, it first waits the grace period a delete
    /// would (writing one of them back where it is, as a keeper's round does) and makes spares of them.
    private func markCooling(_ unnamed: Set<TrieIndex>) throws {
        guard !unnamed.isEmpty else { return }
        // The roles as this change left them (spares it filled have none now, tries it recycled are spares):
        // read from every present trie once and after a recycling, kept up to date as it marks, so a change
        // that lets thousands of tries go does not filter every present trie for each.
        func currentRoles() throws -> [TrieIndex: TrieRole] {
            try presentRead().filter { $0.value.record?.mapID == $0.value.id }.compactMapValues { $0.record?.role }
        }
        var roles = try currentRoles()
        for index in unnamed.sorted() {
            if roles.count < Datapath.sparesKept, case let cooling = roles.filter({ $0.value == .cooling && !namedAtStart.contains($0.key) }),
               cooling.count >= Datapath.coolingKept, let waitIndex = cooling.keys.min(), let id = try datapath.trieID(at: waitIndex) {
                try datapath.policies.setInner(key: waitIndex.key, to: try BPFMap(id: id))
                try recycleCooling()
                roles = try currentRoles()
            }
            if roles.count < Datapath.sparesKept, roles.values.filter({ $0 == .cooling }).count < Datapath.coolingKept,
               let id = try datapath.trieID(at: index) {
                let record = TrieDigestRecord(mapID: id, role: .cooling)
                try datapath.writeRecord(record, at: index)
                present?[index] = (id, record)
                roles[index] = .cooling
            } else {
                try datapath.clearTrie(at: index)
            }
        }
    }

    /// After a write to `policies` (the kernel waited a grace period in it): the cooling tries found
    /// when this change began, let go by earlier ones, are read through no record any more; they are
    /// emptied and become spares. Only while no keeper runs: a keeper's round empties its cooling
    /// tries without the root's lock, and a command sees a keeper before any round of it begins.
    private func recycleCooling() throws {
        var present = try presentRead()
        defer { self.present = present }
        for (index, found) in present where found.record?.role == .cooling && found.record?.mapID == found.id {
            guard !namedAtStart.contains(index), let trie = try? BPFMap(id: found.id) else { continue }
            for key in try trie.keys() { try trie.delete(key: key) }  // nothing writes a cooling trie: one pass empties it
            let spare = TrieDigestRecord(mapID: found.id, role: .spare)
            try datapath.writeRecord(spare, at: index)
            present[index]?.record = spare
        }
    }

    /// Fills a spare with `policy`; nil when there is none. A spare's index left every record at
    /// least a grace period ago (a keeper inserted it, or emptied it after one), so no packet can
    /// still read it through an old record: filling it needs no wait. Its record says "no digest"
    /// while it fills, so one a failure leaves half-filled is an orphan, never a spare.
    private func fillSpare(with policy: CompiledPolicy) throws -> TrieIndex? {
        var present = try presentRead()
        defer { self.present = present }
        for (index, found) in present.sorted(by: { $0.key < $1.key }) where found.record?.role == .spare && found.record?.mapID == found.id {
            present[index]?.record = nil  // taken (or found not to be a spare): not offered again
            guard !namedAtStart.contains(index), let trie = try? BPFMap(id: found.id) else { continue }
            try datapath.forgetDigest(at: index)
            guard try trie.isEmpty else { continue }  // not what a spare is: an orphan now
            try datapath.fill(trie, with: policy)
            try datapath.writeRecord(TrieDigestRecord(mapID: found.id, digest: policy.digest), at: index)
            built.insert(index)
            byDigest[policy.digest] = index
            return index
        }
        return nil
    }

    private func presentRead() throws -> [TrieIndex: Datapath.PresentTrie] {
        if let present { return present }
        let read = try datapath.presentTries()
        present = read
        return read
    }

    /// Lets go of the tries, of those named at the start or built since, that no record names now,
    /// as `Datapath.recycling` says. Returns how many.
    @discardableResult
    public func releaseUnnamed() throws -> Int {
        let unnamed = namedAtStart.union(built).subtracting(try datapath.namedTries())
        switch datapath.recycling {
        case .keeper:
            break
        case .delete:
            for index in unnamed.sorted() { try datapath.clearTrie(at: index) }
        case .onNextWait:
            try markCooling(unnamed)
        }
        for (digest, index) in byDigest where unnamed.contains(index) { byDigest[digest] = nil }
        built.subtract(unnamed)
        return unnamed.count
    }
}

extension Datapath {
    /// Runs a change that swaps pods' policies, then lets go of the tries it left unnamed
    /// as `recycling` says (also when it fails half-way: what it built and flipped no record to).
    public func withSharedTries<T>(_ change: (SharedTries) throws -> T) throws -> T {
        let tries = try SharedTries(self)
        let result: T
        do {
            result = try change(tries)
        } catch {
            _ = try? tries.releaseUnnamed()
            throw error
        }
        try tries.releaseUnnamed()
        return result
    }

    /// The indexes some pod's record names.
    func namedTries() throws -> Set<TrieIndex> {
        Set(try registeredPods().flatMap { $0.record.tries.values })
    }

    /// Empties `index` of `policies` (and forgets its digest).
    func clearTrie(at index: TrieIndex) throws {
        try policies.delete(key: index.key)
        try forgetDigest(at: index)
    }

    /// Writes "nothing known" over the record of `index` (a trie there is an orphan then).
    func forgetDigest(at index: TrieIndex) throws {
        try policyDigests.update(key: index.key, value: [UInt8](repeating: 0, count: TrieDigestRecord.size))
    }

    /// Deletes every trie no record names and no role keeps: what a change killed half-way left,
    /// and what a change let go for a keeper that did not get to it (reconcile's sweep; a change
    /// itself looks only at the indexes it touched). Returns how many.
    @discardableResult
    public func releaseOrphanedTries() throws -> Int {
        let named = try namedTries()
        var released = 0
        for (index, trie) in try presentTries() where !named.contains(index) && trie.record?.role == nil {
            try clearTrie(at: index)
            released += 1
        }
        return released
    }

    /// The id of the trie at `index` of `policies`; nil when the index is empty.
    public func trieID(at index: TrieIndex) throws -> UInt32? {
        guard let value = try policies.lookup(key: index.key), value.count >= 4,
              case let id = value.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) }), id != 0 else { return nil }
        return id
    }
}
