"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Hashing is SHA-256 with the RFC's domain separation: a leaf hash is
SHA-256(0x00 || data), an interior node SHA-256(0x01 || left || right), and the empty
tree's hash is SHA-256 of the empty string. Any RFC 6962 implementation (Certificate
Transparency, Go's sumdb/tlog, transparency-dev/merkle) computes the same tree heads
and checks the same proofs.

Three ways to the same numbers:

- The reference definitions over a list of leaf hashes: `root` (MTH), `inclusion_proof`
  (PATH, RFC 6962 §2.1.1) and `consistency_proof` (PROOF, §2.1.2). Linear in the tree;
  for tests and for a verifier that downloaded every entry anyway.
- `Frontier`: the compact range [0, n), the roots of the perfect subtrees that make up a
  tree of n leaves (at most log2 n + 1 hashes). Appending and computing the tree head
  need nothing else.
- Stored hashes, the layout of Go's golang.org/x/mod/sumdb/tlog (after Crosby and
  Wallach): every node of the tree is stored once, at the dense index
  `stored_hash_index(level, n)`, as soon as its subtree is complete. `append_leaves`
  writes a batch reading only the old tree's frontier, and `tree_hash`, `prove_record`
  (inclusion) and `prove_tree` (consistency) answer for any past tree size with one
  read of O(log n) stored hashes through a `HashReader`.

The verifiers (`verify_inclusion`, `verify_consistency`) are the RFC 9162 §2.1.3.2 and
§2.1.4.2 algorithms and raise `ProofError` with the reason when a proof fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The hash of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1)."""


class ProofError(ValueError):
    """A proof does not prove what it claims, or cannot be checked as given."""


class HashStoreError(RuntimeError):
    """A `HashReader` answered with the wrong number or size of hashes."""


def leaf_hash(data: bytes) -> bytes:
    """The hash of one log entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _trailing_ones(n: int) -> int:
    """How many subtrees the leaf with index n completes: the trailing 1 bits of n."""
    m = n + 1
    return (m & -m).bit_length() - 1


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes long, not {HASH_SIZE}")


# --- Reference definitions over a list of leaf hashes -------------------------------


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the tree head of the tree with these leaf hashes (any size, also 0)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return hashes[lo]
    k = _split(hi - lo)
    return node_hash(_mth(hashes, lo, lo + k), _mth(hashes, lo + k, hi))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path of leaf `index` in the tree of `size` leaves."""
    if not 0 <= index < size <= len(leaf_hashes):
        raise ValueError(f"no leaf {index} in a tree of {size} (of {len(leaf_hashes)}) leaves")
    return _path(leaf_hashes, index, 0, size)


def _path(hashes: Sequence[bytes], m: int, lo: int, hi: int) -> list[bytes]:
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < lo + k:
        return [*_path(hashes, m, lo, lo + k), _mth(hashes, lo + k, hi)]
    return [*_path(hashes, m, lo + k, hi), _mth(hashes, lo, lo + k)]


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]): that the tree of `first` leaves is a prefix of `second`.

    Defined for 0 < first <= second (a proof from the empty tree would prove nothing).
    """
    if not 0 < first <= second <= len(leaf_hashes):
        raise ValueError(
            f"no consistency proof from {first} to {second} (of {len(leaf_hashes)}) leaves"
        )
    return _subproof(leaf_hashes, first, 0, second, True)


def _subproof(hashes: Sequence[bytes], m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    if m == hi:
        return [] if whole else [_mth(hashes, lo, hi)]
    k = _split(hi - lo)
    if m <= lo + k:
        return [*_subproof(hashes, m, lo, lo + k, whole), _mth(hashes, lo + k, hi)]
    return [*_subproof(hashes, m, lo + k, hi, False), _mth(hashes, lo, lo + k)]


# --- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that `leaf` (a leaf hash) is entry `index` of the tree with head `root_hash`.

    Raises ProofError when it is not (or the proof is malformed).
    """
    if not 0 <= index < size:
        raise ProofError(f"no leaf {index} in a tree of {size} leaves")
    _check_hash(leaf, "the leaf hash")
    for position, value in enumerate(proof):
        _check_hash(value, f"proof hash {position}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if r != root_hash:
        raise ProofError("the inclusion proof leads to another tree head")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `first` leaves is a prefix of the tree of `second` leaves.

    Needs 0 < first <= second, as RFC 9162 does: every tree extends the empty tree, so
    there is nothing to prove from size 0 and callers skip that case themselves. Equal
    sizes need an empty proof and equal heads. Raises ProofError when the proof fails.
    """
    if first < 0 or second < first:
        raise ProofError(f"a tree of {second} leaves cannot extend one of {first}")
    if first == 0:
        raise ProofError("there is no consistency proof from the empty tree")
    if first == second:
        if proof:
            raise ProofError("equal tree sizes need an empty consistency proof")
        if first_root != second_root:
            raise ProofError("two different tree heads for the same tree size")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    for position, value in enumerate(proof):
        _check_hash(value, f"proof hash {position}")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != first_root:
        raise ProofError("the consistency proof does not lead to the first tree head")
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the second tree head")


# --- The compact range [0, n) ------------------------------------------------------


@dataclass
class Frontier:
    """The right edge of a growing tree: the roots of its perfect subtrees, largest first.

    A tree of `size` leaves has one such subtree per 1 bit of `size`, so this holds at
    most log2(size) + 1 hashes, and appending or computing the tree head needs nothing
    else (transparency-dev/merkle calls it a compact range, Go's sumdb/tlog reads the
    same nodes in `tree_hash`).
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a tree of {self.size} leaves has {self.size.bit_count()} roots")
        for value in self.hashes:
            _check_hash(value, "a frontier hash")

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at index `size`."""
        _check_hash(leaf, "the leaf hash")
        h, s = leaf, self.size
        while s & 1:
            h = node_hash(self.hashes.pop(), h)
            s >>= 1
        self.hashes.append(h)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree head of the `size` leaves appended so far."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h


# --- Stored hashes (the sumdb/tlog layout) -----------------------------------------


class HashReader(Protocol):
    """Where the stored hashes live (a table, a file, a list)."""

    def get_hashes(self, indexes: Sequence[int]) -> Sequence[bytes]:
        """The hashes stored at these indexes, in the same order (indexes are sorted
        ascending where that matters to the caller). Must raise if one is missing."""
        ...


def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of node (level, n) is stored: the root of leaves
    [n * 2**level, (n + 1) * 2**level). Each node is written once, right after the
    last leaf of its subtree, so the order is the order of appending."""
    if level < 0 or n < 0:
        raise ValueError(f"no tree node ({level}, {n})")
    # Level L's node n is stored right after level 0's node ((n + 1) << L) - 1, which is
    # stored at the sum of m >> i over i >= 0, that is 2m - popcount(m).
    m = ((n + 1) << level) - 1
    return 2 * m - m.bit_count() + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The node (level, n) stored at `index`: the inverse of `stored_hash_index`."""
    if index < 0:
        raise ValueError(f"no stored hash {index}")
    # stored_hash_index(0, n) >= n and grows by 1 + _trailing_ones(n) per leaf, so the
    # leaf written last at or before `index` is at or after index / 2.
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        following = index_n + 1 + _trailing_ones(n)
        if following > index:
            break
        n += 1
        index_n = following
    level = index - index_n
    return level, n >> level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of `size` leaves has stored (the next free index)."""
    if size < 0:
        raise ValueError(f"no tree of {size} leaves")
    return stored_hash_index(0, size)


def _read(reader: HashReader, indexes: Sequence[int]) -> list[bytes]:
    if not indexes:
        return []
    hashes = list(reader.get_hashes(indexes))
    if len(hashes) != len(indexes):
        raise HashStoreError(f"asked for {len(indexes)} stored hashes, got {len(hashes)}")
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise HashStoreError(f"a stored hash is {len(value)} bytes long")
    return hashes


def stored_hashes(reader: HashReader, index: int, leaf: bytes) -> list[bytes]:
    """The hashes to store when appending the leaf hash `leaf` as entry `index`: the
    leaf and the roots of the subtrees it completes, to be written from
    `stored_hash_index(0, index)` on. Reads the left siblings it needs (one call)."""
    _check_hash(leaf, "the leaf hash")
    m = _trailing_ones(index)
    indexes = [stored_hash_index(i, (index >> i) - 1) for i in reversed(range(m))]
    old = _read(reader, indexes)
    hashes = [leaf]
    h = leaf
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


@dataclass(frozen=True)
class Appended:
    """What `append_leaves` computed: the hashes to store and the new tree head."""

    start: int
    """The stored index of `hashes[0]` (= `stored_hash_count` of the old size)."""
    hashes: list[bytes]
    size: int
    """The new tree size."""
    root: bytes


def append_leaves(reader: HashReader, size: int, leaves: Sequence[bytes]) -> Appended:
    """Append a batch of leaf hashes to a stored tree of `size` leaves.

    Reads only the old tree's frontier (at most log2(size) + 1 stored hashes, in one
    call): every older node a new subtree needs is one of those. The caller stores
    `hashes` from index `start` on, in the same transaction as the entries.
    """
    if size < 0:
        raise ValueError(f"no tree of {size} leaves")
    for leaf in leaves:
        _check_hash(leaf, "a leaf hash")
    start = stored_hash_count(size)
    frontier_indexes: list[int] = []
    _subtree_index(0, size, frontier_indexes)
    known = dict(zip(frontier_indexes, _read(reader, frontier_indexes), strict=True))
    new: list[bytes] = []

    def lookup(i: int) -> bytes:
        if i >= start:
            return new[i - start]
        try:
            return known[i]
        except KeyError:  # pragma: no cover - would be a bug in the index arithmetic
            raise HashStoreError(f"stored hash {i} is not on the frontier") from None

    for offset, leaf in enumerate(leaves):
        n = size + offset
        h = leaf
        new.append(h)
        for i in range(_trailing_ones(n)):
            h = node_hash(lookup(stored_hash_index(i, (n >> i) - 1)), h)
            new.append(h)
    new_size = size + len(leaves)
    root_indexes: list[int] = []
    _subtree_index(0, new_size, root_indexes)
    head = (
        _subtree_hash(0, new_size, iter([lookup(i) for i in root_indexes]))
        if new_size
        else EMPTY_ROOT
    )
    return Appended(start=start, hashes=new, size=new_size, root=head)


def frontier(reader: HashReader, size: int) -> Frontier:
    """The `Frontier` of the stored tree of `size` leaves (one read)."""
    indexes: list[int] = []
    _subtree_index(0, size, indexes)
    return Frontier(size=size, hashes=_read(reader, indexes))


def tree_hash(reader: HashReader, size: int) -> bytes:
    """The tree head of the first `size` stored leaves (one read)."""
    if size < 0:
        raise ValueError(f"no tree of {size} leaves")
    if size == 0:
        return EMPTY_ROOT
    indexes: list[int] = []
    _subtree_index(0, size, indexes)
    hashes = iter(_read(reader, indexes))
    head = _subtree_hash(0, size, hashes)
    _check_consumed(hashes)
    return head


def prove_record(reader: HashReader, index: int, size: int) -> list[bytes]:
    """The inclusion proof of entry `index` in the tree of `size` leaves (one read).

    The same hashes as `inclusion_proof` over the leaf list."""
    if not 0 <= index < size:
        raise ValueError(f"no leaf {index} in a tree of {size} leaves")
    indexes: list[int] = []
    _leaf_proof_index(0, size, index, indexes)
    hashes = iter(_read(reader, indexes))
    proof = _leaf_proof(0, size, index, hashes)
    _check_consumed(hashes)
    return proof


def prove_tree(reader: HashReader, first: int, second: int) -> list[bytes]:
    """The consistency proof from the tree of `first` leaves to `second` (one read).

    The same hashes as `consistency_proof` over the leaf list (0 < first <= second)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    indexes: list[int] = []
    _tree_proof_index(0, second, first, indexes)
    hashes = iter(_read(reader, indexes))
    proof = _tree_proof(0, second, first, hashes)
    _check_consumed(hashes)
    return proof


def _check_consumed(hashes: Iterator[bytes]) -> None:
    if next(hashes, None) is not None:  # pragma: no cover - a bug in the index arithmetic
        raise HashStoreError("read more stored hashes than the proof used")


def _maxpow2(n: int) -> tuple[int, int]:
    """k, the largest power of two smaller than n (n >= 2), and log2 k."""
    level = (n - 1).bit_length() - 1
    return 1 << level, level


def _subtree_index(lo: int, hi: int, need: list[int]) -> None:
    """The stored indexes of the perfect subtrees that make up leaves [lo, hi)."""
    while lo < hi:
        k, level = _maxpow2(hi - lo + 1)
        if lo & (k - 1):  # pragma: no cover - a bug in the callers
            raise HashStoreError(f"leaves [{lo}, {hi}) do not start a subtree")
        need.append(stored_hash_index(level, lo >> level))
        lo += k


def _subtree_hash(lo: int, hi: int, hashes: Iterator[bytes]) -> bytes:
    """The root of leaves [lo, hi) from the hashes `_subtree_index` asked for."""
    parts: list[bytes] = []
    while lo < hi:
        k, _ = _maxpow2(hi - lo + 1)
        parts.append(next(hashes))
        lo += k
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def _leaf_proof_index(lo: int, hi: int, n: int, need: list[int]) -> None:
    if lo + 1 == hi:
        return
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        _leaf_proof_index(lo, lo + k, n, need)
        _subtree_index(lo + k, hi, need)
    else:
        _subtree_index(lo, lo + k, need)
        _leaf_proof_index(lo + k, hi, n, need)


def _leaf_proof(lo: int, hi: int, n: int, hashes: Iterator[bytes]) -> list[bytes]:
    if lo + 1 == hi:
        return []
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        proof = _leaf_proof(lo, lo + k, n, hashes)
        sibling = _subtree_hash(lo + k, hi, hashes)
    else:
        sibling = _subtree_hash(lo, lo + k, hashes)
        proof = _leaf_proof(lo + k, hi, n, hashes)
    proof.append(sibling)
    return proof


def _tree_proof_index(lo: int, hi: int, n: int, need: list[int]) -> None:
    if n == hi:
        if lo != 0:
            _subtree_index(lo, hi, need)
        return
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        _tree_proof_index(lo, lo + k, n, need)
        _subtree_index(lo + k, hi, need)
    else:
        _subtree_index(lo, lo + k, need)
        _tree_proof_index(lo + k, hi, n, need)


def _tree_proof(lo: int, hi: int, n: int, hashes: Iterator[bytes]) -> list[bytes]:
    if n == hi:
        # The old tree itself needs no hash (the verifier has it); a right part of it does.
        return [] if lo == 0 else [_subtree_hash(lo, hi, hashes)]
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        proof = _tree_proof(lo, lo + k, n, hashes)
        other = _subtree_hash(lo + k, hi, hashes)
    else:
        other = _subtree_hash(lo, lo + k, hashes)
        proof = _tree_proof(lo + k, hi, n, hashes)
    proof.append(other)
    return proof


class MemoryHashStore:
    """A stored tree in a list: for tests, tools and small logs."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.size = 0

    def get_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        if any(not 0 <= i < len(self.hashes) for i in indexes):
            raise HashStoreError("no such stored hash")
        return [self.hashes[i] for i in indexes]

    def append(self, leaves: Sequence[bytes]) -> bytes:
        """Append leaf hashes; returns the new tree head."""
        appended = append_leaves(self, self.size, leaves)
        if appended.start != len(self.hashes):  # pragma: no cover - a bug
            raise HashStoreError("the stored hashes and the tree size disagree")
        self.hashes.extend(appended.hashes)
        self.size = appended.size
        return appended.root
