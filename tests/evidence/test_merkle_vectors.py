"""transparency-dev/merkle's RFC 6962 / 9162 proof vectors (tests/evidence/vectors/README.md)
against ``evidence.merkle`` and the standalone ``verify.py``: inclusion probes against its
``root_from_path``, consistency probes against its ``consistent``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from evidence import verify as standalone
from evidence.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).parent / "vectors" / "transparency-dev-merkle"

#: Probes the Go library accepts and this project refuses: their roots are not 32 bytes.
STRICTER = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


def probes(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no {kind} vectors under {VECTORS}"
    return [
        pytest.param(json.loads(f.read_text()), id=f.relative_to(VECTORS).as_posix()) for f in files
    ]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def wanted(probe: dict[str, Any], hashes: list[bytes]) -> bool:
    """The library's verdict, except that every hash must be 32 bytes here."""
    return not probe["wantErr"] and all(len(h) == 32 for h in hashes)


@pytest.mark.parametrize("probe", probes("inclusion"))
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    index, size = probe["leafIdx"], probe["treeSize"]
    leaf, root = b64(probe["leafHash"]), b64(probe["root"])
    path = [b64(p) for p in probe["proof"] or []]
    want = wanted(probe, [leaf, root, *path])
    assert verify_inclusion(index, size, leaf, path, root) is want, probe["desc"]
    got = standalone.root_from_path(index, size, leaf, path)
    assert (got is not None and got == root) is want, probe["desc"]


@pytest.mark.parametrize("probe", probes("consistency"))
def test_consistency_probe(probe: dict[str, Any]) -> None:
    old, new = b64(probe["root1"]), b64(probe["root2"])
    path = [b64(p) for p in probe["proof"] or []]
    want = wanted(probe, [old, new, *path])
    got = verify_consistency(probe["size1"], probe["size2"], old, new, path)
    assert got is want, probe["desc"]
    # The checker's own consistency check (a stamped head to the bundle's tree head).
    checked = standalone.consistent(probe["size1"], probe["size2"], old, new, path)
    assert checked is want, probe["desc"]


def test_only_the_known_probes_are_judged_more_strictly() -> None:
    stricter = set()
    for kind in ("inclusion", "consistency"):
        for f in (VECTORS / kind).rglob("*.json"):
            probe = json.loads(f.read_text())
            fields = ("leafHash", "root") if kind == "inclusion" else ("root1", "root2")
            hashes = [b64(probe[k]) for k in fields] + [b64(p) for p in probe["proof"] or []]
            if not probe["wantErr"] and not wanted(probe, hashes):
                stricter.add(f.relative_to(VECTORS).as_posix())
    assert stricter == STRICTER
    assert len(list(VECTORS.rglob("*.json"))) == 196
