"""The model ledger and node identities (``meshrl-trust``).

A ledger is an append-only file of hash-chained, signed blocks: ``GENESIS`` (the trust bundle
and the validators), ``MODEL_UPDATE`` (a round's global model: its hash, the aggregation rule,
participants, set-aside updates, epsilon, the workers' signatures) and ``CONSENSUS_PROOF``
(2f + 1 validators' signed PBFT commits of it). Model weights sit beside it, named by their
SHA-256 (``<ledger>.weights/<hash>.safetensors``).

Everything here reads without changing the file and checks the whole ledger first: a flipped
byte, a cut, reordered or removed blocks, a forged signature or proof raise
:class:`meshrl.CorruptFileError`. A node loads only a model the ledger proves
(:meth:`Ledger.load_model`); any other raises ``LookupError``.

Ledgers are written by the federation and by the MAPE-K detector training
(``meshrl.mapek.evaluate(..., ledger=...)``, Rust); :meth:`Ledger.write_demo` writes a small one
whose proofs come from real PBFT runs. See ``docs/trust.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from meshrl import _core

__all__ = [
    "Block",
    "Identity",
    "Ledger",
    "LedgerReport",
    "ProvenModel",
    "generate_identity",
    "load_identity",
]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ProvenModel:
    """A model with a consensus proof."""

    round: int
    model_hash: str
    """SHA-256 (hex) of the weights file."""
    update_block: int
    """Index of its ``MODEL_UPDATE`` block."""
    proof_block: int
    """Index of its ``CONSENSUS_PROOF`` block."""


@dataclass(frozen=True)
class LedgerReport:
    """What :meth:`Ledger.verify` checked."""

    blocks: int
    model_updates: int
    consensus_proofs: int
    head: str
    """The last block's hash (hex)."""
    validator_set: str
    """The validator set's ID (hex): compare it with one from a trusted source."""
    f: int
    """Byzantine validators tolerated."""
    latest_proven: Optional[ProvenModel]
    anchored: bool
    """Whether the head file anchored the length (without it a cut at a block boundary is
    not detectable)."""
    torn_tail: Optional[str]
    """An interrupted append after the last block (cut by the next writer), if any."""
    missing_weights: list[str]


@dataclass(frozen=True)
class Block:
    """One block: ``kind`` is ``GENESIS``, ``MODEL_UPDATE`` or ``CONSENSUS_PROOF``."""

    index: int
    kind: str
    hash: str
    prev: str
    author: str
    """The SPIFFE ID of the node that appended it."""
    round: Optional[int]
    body: dict[str, Any]
    """The block's content as stored (JSON)."""


@dataclass(frozen=True)
class Identity:
    """A node's SPIFFE ID and ed25519 public key (hex); the secret stays in its key file."""

    spiffe_id: str
    public_key: str


def _proven(d: Optional[dict[str, Any]]) -> Optional[ProvenModel]:
    return None if d is None else ProvenModel(**d)


class Ledger:
    """A model ledger file, read and checked on every call (never changed)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(os.fspath(path))
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such ledger")

    def _inspect(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        blocks, report = _core.ledger_inspect(str(self.path))
        return json.loads(blocks), json.loads(report)

    def verify(self) -> LedgerReport:
        """Checks every block (checksums, chain, signatures, proofs, head, weights); raises
        :class:`meshrl.CorruptFileError` on any tampering."""
        _, r = self._inspect()
        r["latest_proven"] = _proven(r["latest_proven"])
        return LedgerReport(**r)

    def blocks(self) -> list[Block]:
        """Every block, in order (after checking the ledger)."""
        out = []
        for b in self._inspect()[0]:
            body = b["body"]
            rnd = body.get("round", body.get("value", {}).get("round"))
            out.append(
                Block(
                    index=b["index"],
                    kind=body["kind"],
                    hash=b["hash"],
                    prev=b["prev"],
                    author=b["author"],
                    round=rnd,
                    body=body,
                )
            )
        return out

    def load_model(self, model_hash: str) -> np.ndarray:
        """The float32 weights of ``model_hash``, only if the ledger proves that model
        (``LookupError`` otherwise); the bytes are checked against the hash."""
        data, values = _core.ledger_load_proven(str(self.path), model_hash)
        if values is None:
            raise ValueError(f"model {model_hash} is not a single float32 tensor; use load_model_bytes")
        return values

    def load_model_bytes(self, model_hash: str) -> bytes:
        """The safetensors bytes of ``model_hash``, only if the ledger proves that model."""
        return _core.ledger_load_proven(str(self.path), model_hash)[0]

    def latest_model(self) -> Optional[tuple[ProvenModel, np.ndarray]]:
        """The latest proven model and its weights, or ``None`` if no model is proven yet."""
        latest = self.verify().latest_proven
        if latest is None:
            return None
        return latest, self.load_model(latest.model_hash)

    @staticmethod
    def write_demo(path: PathLike, rounds: int = 3, validators: int = 4, seed: int = 0) -> "Ledger":
        """Writes a demo ledger of ``rounds`` proven rounds (a coordinator, three workers,
        ``validators`` validators; each proof from a real PBFT run) and returns it. Fails if
        ``path`` exists."""
        for name, v, hi in (("rounds", rounds, 10_000), ("validators", validators, 64), ("seed", seed, 2**64 - 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if not 0 <= v <= hi:
                raise ValueError(f"{name} must be in 0..={hi}, got {v}")
        _core.ledger_write_demo(os.fspath(path), int(rounds), int(validators), int(seed))
        return Ledger(path)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"


def generate_identity(path: PathLike, trust_domain: str, node: str) -> Identity:
    """Generates an ed25519 key (OS randomness) for ``spiffe://<trust_domain>/mesh/node/<node>``
    and writes it to ``path`` with mode 0600 (never overwriting a file)."""
    spiffe_id, public_key = _core.identity_generate(os.fspath(path), trust_domain, node)
    return Identity(spiffe_id, public_key)


def load_identity(path: PathLike) -> Identity:
    """Reads a key file (refused if others can read it: ``PermissionError``)."""
    spiffe_id, public_key = _core.identity_load(os.fspath(path))
    return Identity(spiffe_id, public_key)
