"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

The tree keeps the leaf hashes of an append-only list. Every subtree that the RFC's recursive
definitions visit and that is complete (a power-of-two span starting at a multiple of its size)
never changes once its leaves exist, so its hash is cached; a root or a proof then costs
O(log n) hashes after the first computation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HASH_SIZE = 32

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1)."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _hashes(*values: bytes) -> bool:
    """True when every value is a SHA-256 digest (32 bytes): a proof with a shorter or longer
    element is refused rather than hashed, so no other input can stand in for a node."""
    return all(len(v) == _HASH_SIZE for v in values)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with RFC 9162 roots and proofs for any prefix."""

    __slots__ = ("_cache", "_leaves")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._leaves: list[bytes] = []
        # (start, size) of complete power-of-two subtrees -> hash; immutable once leaves exist.
        self._cache: dict[tuple[int, int], bytes] = {}
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self._leaves)

    def append(self, data: bytes) -> int:
        """Append a leaf for ``data``; return its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        """Append an already computed leaf hash; return its index."""
        if not _hashes(h):
            raise ValueError("a leaf hash is 32 bytes")
        self._leaves.append(h)
        return len(self._leaves) - 1

    def leaf(self, index: int) -> bytes:
        return self._leaves[index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        n = self._size(size)
        return EMPTY_ROOT if n == 0 else self._mth(0, n)

    def warm(self) -> None:
        """Fill the subtree cache for the current size (do this off the event loop)."""
        self.root()

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 §2.1.3.1: the audit path of leaf ``index`` in tree ``size``."""
        n = self._size(size)
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} is outside a tree of size {n}")
        path: list[bytes] = []
        start, m = 0, index
        # Walk down from the root; siblings are collected top-down, the path is bottom-up.
        while n > 1:
            k = _split(n)
            if m < k:
                path.append(self._mth(start + k, start + n))
                n = k
            else:
                path.append(self._mth(start, start + k))
                start, m, n = start + k, m - k, n - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 9162 §2.1.4.1; empty when ``old_size == new_size``."""
        n = self._size(new_size)
        m = old_size
        if not 0 < m <= n:
            raise ValueError(f"consistency needs 0 < old size ({m}) <= new size ({n})")
        path: list[bytes] = []
        start, complete = 0, True
        while m != n:
            k = _split(n)
            if m <= k:
                path.append(self._mth(start + k, start + n))
                n = k
            else:
                path.append(self._mth(start, start + k))
                start, m, n, complete = start + k, m - k, n - k, False
        if not complete:
            path.append(self._mth(start, start + n))
        path.reverse()
        return path

    def _size(self, size: int | None) -> int:
        if size is None:
            return len(self._leaves)
        if not 0 <= size <= len(self._leaves):
            raise ValueError(f"tree size {size} is outside 0..{len(self._leaves)}")
        return size

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1:
            return self._leaves[start]
        complete = n & (n - 1) == 0
        if complete:
            cached = self._cache.get((start, n))
            if cached is not None:
                return cached
        k = _split(n)
        h = node_hash(self._mth(start, start + k), self._mth(start + k, end))
        if complete:
            self._cache[(start, n)] = h
        return h


def root_from_inclusion_proof(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root implied by an audit path (RFC 9162 §2.1.3.2), or None when the path is malformed
    (an index outside the tree, a path of the wrong length, a leaf or element not 32 bytes)."""
    if index >= tree_size or index < 0 or not _hashes(leaf, *proof):
        return None
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` under ``root``?"""
    return _hashes(root) and root_from_inclusion_proof(index, tree_size, leaf, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``old_size`` a prefix of the one of ``new_size``?

    Equal sizes are consistent with an empty proof and equal roots (the RFC leaves that case to
    the caller). Roots and proof elements must be 32 bytes.
    """
    if not 0 < old_size <= new_size or not _hashes(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
