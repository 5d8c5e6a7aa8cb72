"""A self-healing mesh: the MAPE-K loop and its incident scenarios (``meshrl-mapek``).

>>> r = meshrl.mapek.evaluate(["configs/eval/incidents/node_turns_malicious.toml"])
>>> inc = r["incidents"][0]
>>> fed = next(l for l in inc["with_loop"] if l["detector"] == "federated")
>>> fed["recovered_after"], fed["time_to_detect_mean"], fed["false_quarantines_per_hour"]

Each incident file names a base scenario, what goes wrong and when (a node turning
malicious, a link degrading, a hub failing, a flash crowd, or nothing: ``healthy``), and how
long to run. :func:`evaluate` trains the detectors once (federated across the nodes of
training meshes, the same model on one node's data, and the fixed threshold rule), then runs
every incident without the loop and with it (once per detector) on the same packets, against
the same mesh without the incident. Results are plain dicts (see ``docs/mapek.md`` for every
field); ``tables`` holds the markdown tables that RESULTS.md shows.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence, Union

from meshrl import _core

__all__ = ["INCIDENT_KINDS", "evaluate", "load_incident"]

PathLike = Union[str, "os.PathLike[str]"]

INCIDENT_KINDS: tuple[str, ...] = ("healthy", "node_turns_malicious", "link_degrades", "hub_fails", "flash_crowd")
"""The ``kind`` values an incident file may give."""


def load_incident(path: PathLike) -> dict[str, Any]:
    """Reads and validates an incident file. Returns ``name``, ``scenario`` (the base
    environment config, resolved), ``incident`` (``{kind: {fields}}``), ``run``, ``mapek`` and
    ``detector`` settings. A bad value raises ``ValueError`` naming the field
    (``incident.drop_probability``); a missing file ``FileNotFoundError``."""
    return json.loads(_core.load_incident(os.fspath(path)))


def evaluate(
    incidents: PathLike | Sequence[PathLike], ledger: PathLike | None = None
) -> dict[str, Any]:
    """Trains the detectors on the first file's scenario and evaluates every incident file with
    and without the loop. Returns ``detectors`` (training data, held-out scores, model
    history), ``incidents`` (one report per file) and ``tables`` (markdown).

    ``ledger`` (overrides ``[detector] ledger``) records the federated detector's rounds in a
    model ledger: every node signs its update, validators among the nodes agree on each round
    with PBFT, and the model of each next round (and the calibrated one the loop runs) is read
    back from the ledger. ``detectors["ledger"]`` then says where, how many blocks, and the
    SHA-256 of the model served; ``meshrl.ledger.Ledger(path).verify()`` checks the file. An existing
    ledger of the same training is continued; another training's raises ``ValueError``."""
    paths = [incidents] if isinstance(incidents, (str, os.PathLike)) else list(incidents)
    raw, tables = _core.evaluate_incidents(
        [os.fspath(p) for p in paths], None if ledger is None else os.fspath(ledger)
    )
    out: dict[str, Any] = json.loads(raw)
    out["tables"] = tables
    return out
