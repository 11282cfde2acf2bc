import BPFKit
import DatapathModel
import Glibc
import HostKit

/// The datapath's tries during one change, shared by content: a pod whose
/// policy in a direction has the digest of a trie some record names reads that
/// trie; any other policy gets a trie built at a free index. Records flip to
/// their tries one by one (each pod atomically); `releaseUnnamed` then deletes
/// the tries no record names any more. The kernel's reference counts keep a
/// trie alive while a packet still reads it.
///
/// Every write to `policies` waits for an RCU grace period (milliseconds), so a
/// change costs one write per distinct new policy and one per trie let go, not
/// one per pod: 250 pods selected by one object share one trie and one write.
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
    /// Tries this change built (each one write to `policies`).
    public var builtCount: Int { built.count }

    init(_ datapath: Datapath) throws {
        self.datapath = datapath
        namedAtStart = try datapath.namedTries()
        for index in namedAtStart {
            guard let record = try datapath.policyDigests.lookup(key: index.key).flatMap(TrieDigestRecord.decode),
                  try datapath.trieID(at: index) == record.mapID else { continue }
            byDigest[record.digest] = index
        }
    }

    /// Where a trie holding `policy` is: one already there with its content, or one built now.
    public func index(for policy: CompiledPolicy) throws -> TrieIndex {
        if let index = byDigest[policy.digest] { return index }
        while searchFrom < TrieIndex.count {
            guard let index = TrieIndex(rawValue: UInt16(searchFrom)) else { break }
            searchFrom += 1
            guard !namedAtStart.contains(index), !built.contains(index) else { continue }
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
        try datapath.policyDigests.update(key: index.key, value: TrieDigestRecord(mapID: try trie.info().id, digest: policy.digest).encode())
        built.insert(index)
        byDigest[policy.digest] = index
    }

    /// Deletes the tries, of those named at the start or built since, that no record names now; returns how many.
    @discardableResult
    public func releaseUnnamed() throws -> Int {
        let unnamed = namedAtStart.union(built).subtracting(try datapath.namedTries())
        for index in unnamed.sorted() { try datapath.clearTrie(at: index) }
        for (digest, index) in byDigest where unnamed.contains(index) { byDigest[digest] = nil }
        built.subtract(unnamed)
        return unnamed.count
    }
}

extension Datapath {
    /// Runs a change that swaps pods' policies, then deletes the tries it left unnamed
    /// (also when it fails half-way: what it built and flipped no record to goes).
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
        try policyDigests.update(key: index.key, value: [UInt8](repeating: 0, count: TrieDigestRecord.size))
    }

    /// Deletes every trie no record names: what a change killed half-way left
    /// (reconcile's sweep; a change itself looks only at the indexes it touched). Returns how many.
    @discardableResult
    public func releaseOrphanedTries() throws -> Int {
        let named = try namedTries()
        var released = 0
        for index in TrieIndex.all where !named.contains(index) {
            guard try trieID(at: index) != nil else { continue }
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
