from __future__ import annotations

import hashlib

import pytest

from evidence import verify as standalone
from evidence.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# The leaves of the certificate-transparency reference tests and the roots they publish.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# Reference: the recursive definitions of RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1, verbatim.
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


DATA = [f"entry-{i}".encode() for i in range(20)]


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    for d in DATA:
        t.append(d)
    return t


def test_ct_reference_roots() -> None:
    t = MerkleTree()
    for i, d in enumerate(CT_LEAVES):
        t.append(d)
        assert t.root().hex() == CT_ROOTS[i]
    assert MerkleTree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_hand_computed_small_trees() -> None:
    a, b, c = leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")
    assert a == hashlib.sha256(b"\x00a").digest()
    t = MerkleTree([a, b, c])
    assert t.root(1) == a
    assert t.root(2) == node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert t.root(3) == node_hash(node_hash(a, b), c)
    assert t.inclusion_proof(2, 3) == [node_hash(a, b)]
    assert t.inclusion_proof(0, 3) == [b, c]
    assert t.consistency_proof(2, 3) == [c]
    assert t.consistency_proof(1, 3) == [b, c]


def test_roots_match_the_rfc_definition_for_every_size(tree: MerkleTree) -> None:
    for n in range(0, 21):
        assert tree.root(n) == ref_mth(DATA[:n])


def test_every_inclusion_proof_matches_and_verifies(tree: MerkleTree) -> None:
    for n in range(1, 21):
        root = tree.root(n)
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == ref_path(m, DATA[:n])
            assert verify_inclusion(m, n, leaf_hash(DATA[m]), proof, root)
            # The wrong leaf, index, size or a changed path must all fail.
            assert not verify_inclusion(m, n, leaf_hash(b"other"), proof, root)
            if n > 1:
                assert not verify_inclusion((m + 1) % n, n, leaf_hash(DATA[m]), proof, root)
                assert not verify_inclusion(m, n, leaf_hash(DATA[m]), proof[:-1], root)
                bad = [proof[0][::-1], *proof[1:]]
                assert not verify_inclusion(m, n, leaf_hash(DATA[m]), bad, root)
            assert not verify_inclusion(m, n, leaf_hash(DATA[m]), [*proof, root], root)
            assert not verify_inclusion(n, n, leaf_hash(DATA[m]), proof, root)


def test_every_consistency_proof_matches_and_verifies(tree: MerkleTree) -> None:
    for n in range(1, 21):
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == ref_subproof(m, DATA[:n], True)
            old, new = tree.root(m), tree.root(n)
            assert verify_consistency(m, n, old, new, proof)
            if m < n:
                assert not verify_consistency(m, n, leaf_hash(b"x"), new, proof)
                assert not verify_consistency(m, n, old, leaf_hash(b"x"), proof)
                assert not verify_consistency(m, n, old, new, proof[:-1])
                assert not verify_consistency(m, n, old, new, [])
                if n > m + 1:
                    assert not verify_consistency(m, n - 1, old, tree.root(n - 1), proof)


def test_a_forked_history_is_not_consistent() -> None:
    honest = MerkleTree(leaf_hash(d) for d in DATA[:10])
    forked = MerkleTree(leaf_hash(d) for d in [*DATA[:4], b"rewritten", *DATA[5:10]])
    proof = forked.consistency_proof(6, 10)
    assert not verify_consistency(6, 10, honest.root(6), forked.root(10), proof)


def test_bad_arguments_are_rejected(tree: MerkleTree) -> None:
    with pytest.raises(ValueError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        tree.root(21)
    with pytest.raises(ValueError):
        tree.consistency_proof(0, 5)
    with pytest.raises(ValueError):
        tree.consistency_proof(6, 5)


def test_large_log_proofs_agree_with_a_fresh_tree() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    t = MerkleTree(hashes)
    root = t.root()
    for index in (0, 1, 4095, 65_536, 99_999):
        assert verify_inclusion(index, len(t), hashes[index], t.inclusion_proof(index), root)
    old = t.root(70_001)
    assert verify_consistency(70_001, 100_000, old, root, t.consistency_proof(70_001))


def test_hashes_that_are_not_32_bytes_are_refused(tree: MerkleTree) -> None:
    n, m = 13, 5
    leaf, proof, root = tree.leaf(m), tree.inclusion_proof(m, n), tree.root(n)
    assert verify_inclusion(m, n, leaf, proof, root)
    # A 64-byte "leaf" that is two hashes would otherwise fold like the level above.
    for bad_leaf in (leaf[:31], leaf + b"\0", b""):
        assert root_from_inclusion_proof(m, n, bad_leaf, proof) is None
        assert standalone.root_from_path(m, n, bad_leaf, proof) is None
    for i in range(len(proof)):
        short = [*proof[:i], proof[i][:31], *proof[i + 1 :]]
        assert root_from_inclusion_proof(m, n, leaf, short) is None
        assert standalone.root_from_path(m, n, leaf, short) is None
    assert not verify_inclusion(m, n, leaf, proof, root + b"\0")

    old = tree.root(6)
    consistency = tree.consistency_proof(6, n)
    assert verify_consistency(6, n, old, root, consistency)
    assert not verify_consistency(6, n, old[:31], root, consistency)
    assert not verify_consistency(6, n, old, root[:31], consistency)
    assert not verify_consistency(6, n, old, root, [*consistency[:-1], consistency[-1] + b"\0"])
    assert not verify_consistency(n, n, root[:16], root[:16], [])
