"""Run an exported routing policy with NumPy only: the Python twin of the ``meshrl-runtime``
crate, for mesh nodes that run Python.

>>> from meshrl.runtime import NodeContext, Policy, SlotMeasurement
>>> policy = Policy.load("policy.safetensors")        # from `meshrl export` or Trainer.export
>>> near = SlotMeasurement(rssi_dbm=-60, latency_ms=4.0, packet_loss=0.1, hops_to_destination=2,
...                        bandwidth_mbps=39.0, trust=0.9, etx_to_destination=2.5,
...                        latency_to_destination_ms=12.0, queue=0.1)
>>> obs, mask = policy.obs_spec.build([near] + [None] * (policy.num_actions - 1),
...                                   NodeContext(queue=0.2, hops_taken=1, ttl=32))
>>> policy.act(obs, mask)                            # index of the neighbour slot
0

This module imports nothing from meshrl's compiled core: copy this one file next to NumPy and
it works. It is a deliberate copy of the contract in ``rust/format`` (layouts, normalization,
checksum) and of ``rust/runtime`` (the file format, documented in ``rust/runtime/src/lib.rs``:
safetensors, actor tensors ``actor.{i}.weight`` ``[d_out, d_in]`` and ``actor.{i}.bias``,
string metadata, format versions 2 and 1); the parity tests hold the copies together. Every
defect of a file raises :class:`PolicyFileError` naming it; bad calls raise ``ValueError``
naming the argument.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = [
    "Policy",
    "ObsSpec",
    "SlotMeasurement",
    "NeighborMeasurement",
    "NodeContext",
    "PolicyFileError",
    "FORMAT",
    "FORMAT_VERSION",
    "OLDEST_FORMAT_VERSION",
    "FEATURE_SETS",
    "CONSTANTS",
    "fnv1a64",
    "metadata_checksum",
]

FORMAT = "meshrl-policy"
#: The newest ``format_version`` this module reads (and the one meshrl writes).
FORMAT_VERSION = 2
#: The oldest one it still reads (``spec`` features, ``mlp``, checksum over the actor only).
OLDEST_FORMAT_VERSION = 1
#: Per-slot and context feature names of each feature set, in order (``meshrl-format``).
FEATURE_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "spec": (
        ("rssi", "latency", "packet_loss", "hop_count_to_destination", "bandwidth", "trust"),
        ("queue",),
    ),
    "routing": (
        ("rssi", "latency", "packet_loss", "hop_count_to_destination", "bandwidth", "trust",
         "etx_to_destination", "etx_excess", "latency_to_destination", "queue", "visited"),
        ("queue", "ttl_left", "hops_taken"),
    ),
}
#: The normalization constants (metadata ``obs.<name>``) this module builds observations with;
#: a file trained with other values is refused, as by the Rust runtime. Version 1 files hold
#: the first five.
CONSTANTS: dict[str, float] = {
    "rssi_center_dbm": -50.0,
    "rssi_scale_db": 50.0,
    "latency_half_ms": 50.0,
    "hops_scale": 32.0,
    "bandwidth_scale_mbps": 65.0,
    "etx_half": 4.0,
    "etx_excess_scale": 4.0,
    "path_latency_half_ms": 100.0,
}
MAX_WIDTH = 1 << 16
MAX_HIDDEN_LAYERS = 16
MAX_METADATA_ENTRIES = 1024
_FNV_OFFSET = 0xCBF29CE484222325
_MAX_HEADER = 100_000_000
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_f32 = np.float32


class PolicyFileError(ValueError):
    """The bytes are not a valid exported meshrl policy (the message says why)."""


def fnv1a64(data: bytes, h: int = _FNV_OFFSET) -> int:
    """FNV-1a, 64 bit, continuing from ``h``."""
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def metadata_checksum(tensor_bytes: bytes, metadata: dict[str, str]) -> int:
    """The checksum of a version 2 export: FNV-1a 64 over the actor tensors' bytes (layer by
    layer, weight then bias), continued over every metadata entry except ``checksum``, sorted
    by key, each as ``key`` NUL ``value`` LF (UTF-8)."""
    h = fnv1a64(tensor_bytes)
    for key in sorted(k for k in metadata if k != "checksum"):
        h = fnv1a64(key.encode() + b"\0" + metadata[key].encode() + b"\n", h)
    return h


@dataclass(frozen=True)
class SlotMeasurement:
    """What a node knows about one neighbour, in raw units. The ``spec`` feature set reads the
    first six fields; ``routing`` all of them."""

    rssi_dbm: float
    """Received signal strength, dBm."""
    latency_ms: float
    """Link latency estimate, ms (≥ 0)."""
    packet_loss: float
    """Frame loss probability, 0..1."""
    hops_to_destination: Optional[int]
    """Hops from the neighbour to the destination (0: it is the destination; None: no route)."""
    bandwidth_mbps: float
    """Link rate, Mbps (≥ 0)."""
    trust: float
    """Trust in the neighbour (forwarding reputation), 0..1."""
    etx_to_destination: float = math.inf
    """The neighbour's advertised ETX distance to the destination (inf or NaN: no route)."""
    latency_to_destination_ms: float = math.inf
    """The neighbour's advertised latency to the destination, ms (inf or NaN: no route)."""
    queue: float = 0.0
    """The neighbour's advertised queue occupancy, 0..1."""
    visited: bool = False
    """The packet already passed through the neighbour."""


#: The name of :class:`SlotMeasurement` before the ``routing`` features (its first six fields).
NeighborMeasurement = SlotMeasurement


@dataclass(frozen=True)
class NodeContext:
    """What the node knows about itself and the packet. ``spec`` reads only ``queue``."""

    queue: float = 0.0
    """The node's queue occupancy, 0..1."""
    hops_taken: int = 0
    """Hops the packet has taken so far (≤ ttl)."""
    ttl: int = 0
    """The packet's hop limit (≥ 1 for the ``routing`` features)."""


def _number(name: str, v: Any, low: float = -math.inf, high: float = math.inf, nan_ok: bool = False,
            inf_ok: bool = False) -> float:
    """``v`` as a float within ``[low, high]`` (finite unless ``inf_ok``); ValueError naming
    ``name`` otherwise."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {v!r} is not a number") from None
    if math.isnan(x):
        if nan_ok:
            return x
        raise ValueError(f"{name}: NaN, expected a number in [{low}, {high}]")
    if math.isinf(x) and inf_ok and x > 0:
        return x
    if not (math.isfinite(x) and low <= x <= high):
        raise ValueError(f"{name}: {x} is outside [{low}, {high}]")
    return x


def _count(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name}: {v!r}, expected a non-negative integer")
    return int(v)


def _saturating(x: float, half: np.float32) -> np.float32:
    if math.isfinite(x):
        x32 = _f32(max(x, 0.0))
        return x32 / (x32 + half)
    return _f32(1.0)


@dataclass(frozen=True)
class ObsSpec:
    """The observation layout of a policy and its normalization constants (read from the file):
    ``num_slots`` neighbour slots of :attr:`per_slot` features, then :attr:`context` features.
    Per slot (``routing`` adds 6 to 10):

    ====  ==========================  ==========================================================
    0     RSSI                        ``(rssi_dbm - rssi_center_dbm) / rssi_scale_db``
    1     latency                     ``latency_ms / (latency_ms + latency_half_ms)``
    2     packet loss                 as is
    3     hops to destination         ``min(hops, hops_scale) / hops_scale``, 1 if no route
    4     bandwidth                   ``bandwidth_mbps / bandwidth_scale_mbps``
    5     trust                       as is
    6     advertised ETX              ``etx / (etx + etx_half)``, 1 if no route
    7     ETX excess                  ``min(c - c_min, etx_excess_scale) / etx_excess_scale``,
                                      ``c`` = link ETX + advertised ETX, ``c_min`` over the
                                      valid slots; 1 if no route
    8     advertised latency          ``ms / (ms + path_latency_half_ms)``, 1 if no route
    9     neighbour's queue           as is
    10    visited                     1 if the packet already passed through the neighbour
    ====  ==========================  ==========================================================

    Context: ``spec``: the node's queue; ``routing``: the queue, ``1 - hops_taken / ttl`` and
    ``min(hops_taken, hops_scale) / hops_scale``. Empty slots are zero and masked out.
    """

    num_slots: int
    rssi_center_dbm: float = CONSTANTS["rssi_center_dbm"]
    rssi_scale_db: float = CONSTANTS["rssi_scale_db"]
    latency_half_ms: float = CONSTANTS["latency_half_ms"]
    hops_scale: float = CONSTANTS["hops_scale"]
    bandwidth_scale_mbps: float = CONSTANTS["bandwidth_scale_mbps"]
    etx_half: float = CONSTANTS["etx_half"]
    etx_excess_scale: float = CONSTANTS["etx_excess_scale"]
    path_latency_half_ms: float = CONSTANTS["path_latency_half_ms"]
    feature_set: str = "spec"

    @property
    def slot_names(self) -> tuple[str, ...]:
        return FEATURE_SETS[self.feature_set][0]

    @property
    def context_names(self) -> tuple[str, ...]:
        return FEATURE_SETS[self.feature_set][1]

    @property
    def per_slot(self) -> int:
        return len(self.slot_names)

    @property
    def context(self) -> int:
        return len(self.context_names)

    @property
    def obs_dim(self) -> int:
        return self.num_slots * self.per_slot + self.context

    def _check_slot(self, s: int, m: Any) -> None:
        name = f"slots[{s}]"
        if not isinstance(m, SlotMeasurement):
            raise ValueError(f"{name}: {type(m).__name__}, expected a SlotMeasurement or None")
        _number(f"{name}.rssi_dbm", m.rssi_dbm)
        _number(f"{name}.latency_ms", m.latency_ms, 0.0)
        _number(f"{name}.packet_loss", m.packet_loss, 0.0, 1.0)
        if m.hops_to_destination is not None:
            _count(f"{name}.hops_to_destination", m.hops_to_destination)
        _number(f"{name}.bandwidth_mbps", m.bandwidth_mbps, 0.0)
        _number(f"{name}.trust", m.trust, 0.0, 1.0)
        if self.feature_set == "routing":
            _number(f"{name}.etx_to_destination", m.etx_to_destination, 0.0, nan_ok=True, inf_ok=True)
            _number(f"{name}.latency_to_destination_ms", m.latency_to_destination_ms, 0.0, nan_ok=True, inf_ok=True)
            _number(f"{name}.queue", m.queue, 0.0, 1.0)
            if m.visited not in (0, 1):
                raise ValueError(f"{name}.visited: {m.visited!r}, expected True/False (or 0/1)")

    def _write_slot(self, m: SlotMeasurement, out: np.ndarray) -> None:
        """One slot's features, in float32 like ``meshrl-format``'s ``write_slot``; for
        ``routing`` entry 7 holds the raw path cost until :meth:`_finish` turns it into the
        excess over the best slot."""
        out[0] = (_f32(m.rssi_dbm) - _f32(self.rssi_center_dbm)) / _f32(self.rssi_scale_db)
        out[1] = _saturating(m.latency_ms, _f32(self.latency_half_ms))
        out[2] = _f32(m.packet_loss)
        hs = _f32(self.hops_scale)
        out[3] = 1.0 if m.hops_to_destination is None else min(_f32(m.hops_to_destination), hs) / hs
        out[4] = _f32(m.bandwidth_mbps) / _f32(self.bandwidth_scale_mbps)
        out[5] = _f32(m.trust)
        if self.feature_set == "routing":
            out[6] = _saturating(m.etx_to_destination, _f32(self.etx_half))
            link_etx = _f32(1.0) / (_f32(1.0) - np.clip(_f32(m.packet_loss), _f32(0.0), _f32(0.999)))
            out[7] = link_etx + _f32(m.etx_to_destination)
            out[8] = _saturating(m.latency_to_destination_ms, _f32(self.path_latency_half_ms))
            out[9] = _f32(m.queue)
            out[10] = 1.0 if m.visited else 0.0

    def _finish(self, slots: np.ndarray, mask: np.ndarray) -> None:
        """The cross-slot feature (``etx_excess``) over ``slots`` ``(num_slots, per_slot)``."""
        if self.feature_set != "routing":
            return
        cost = slots[:, 7]
        finite = mask & np.isfinite(cost)
        if not finite.any():
            slots[mask, 7] = 1.0
            return
        best = cost[finite].min()
        scale = _f32(self.etx_excess_scale)
        excess = np.minimum(cost[finite] - best, scale) / scale
        slots[mask & ~np.isfinite(cost), 7] = 1.0
        slots[finite, 7] = excess

    def build(self, slots: Sequence[Optional[SlotMeasurement]], context: Optional[NodeContext] = None, *,
              queue: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        """Observation ``(obs_dim,)`` float32 and mask ``(num_slots,)`` bool from the neighbour
        table (``None``: empty slot) and what the node knows about itself and the packet
        (``queue=q`` is short for ``NodeContext(queue=q)``). Values out of their ranges (NaN, a
        negative latency, a loss above 1, ...) raise ``ValueError`` naming the argument."""
        if queue is not None:
            if context is not None:
                raise ValueError("context: give either context= or queue=, not both")
            context = NodeContext(queue=queue)
        if context is None:
            context = NodeContext()
        if not isinstance(context, NodeContext):
            raise ValueError(f"context: {type(context).__name__}, expected a NodeContext")
        if len(slots) != self.num_slots:
            raise ValueError(f"slots: {len(slots)} slots, the policy has {self.num_slots}")
        for s, m in enumerate(slots):
            if m is not None:
                self._check_slot(s, m)
        _number("context.queue", context.queue, 0.0, 1.0)
        hops, ttl = _count("context.hops_taken", context.hops_taken), _count("context.ttl", context.ttl)
        if self.feature_set == "routing" and not (1 <= ttl and hops <= ttl):
            raise ValueError(f"context: hops_taken {hops} and ttl {ttl}, expected 1 <= ttl and hops_taken <= ttl")

        k, f = self.num_slots, self.per_slot
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        table = obs[:k * f].reshape(k, f)
        mask = np.array([m is not None for m in slots], dtype=bool)
        for s, m in enumerate(slots):
            if m is not None:
                self._write_slot(m, table[s])
        self._finish(table, mask)
        ctx = obs[k * f:]
        ctx[0] = _f32(context.queue)
        if self.feature_set == "routing":
            hs = _f32(self.hops_scale)
            ctx[1] = np.clip(_f32(1.0) - _f32(hops) / _f32(max(ttl, 1)), _f32(0.0), _f32(1.0))
            ctx[2] = min(_f32(hops), hs) / hs
        return obs, mask


def _meta(metadata: dict[str, str], key: str) -> str:
    if key not in metadata:
        raise PolicyFileError(f"bad policy file: metadata `{key}`: missing")
    return metadata[key]


def _bad_meta(key: str, reason: str) -> PolicyFileError:
    return PolicyFileError(f"bad policy file: metadata `{key}`: {reason}")


def _uint(metadata: dict[str, str], key: str, text: Optional[str] = None) -> int:
    s = _meta(metadata, key) if text is None else text
    if not s.strip().isdigit() or not s.strip().isascii():
        raise _bad_meta(key, f"`{s}` is not a non-negative integer")
    return int(s)


def _float(metadata: dict[str, str], key: str) -> float:
    s = _meta(metadata, key)
    try:
        v = float(s)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v):
        raise _bad_meta(key, f"`{s}` is not a finite number")
    return v


def _parse_safetensors(data: bytes) -> tuple[dict[str, Any], dict[str, str], memoryview]:
    """Header entries, metadata and the tensor bytes; checks the container's consistency."""
    bad = "bad policy file: not a safetensors file: "
    if len(data) < 8:
        raise PolicyFileError(bad + f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise PolicyFileError(bad + f"header of {n} bytes does not fit in {len(data)} bytes")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PolicyFileError(bad + f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise PolicyFileError(bad + "header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise PolicyFileError(bad + "__metadata__ must map strings to strings")
    try:
        for k, v in metadata.items():
            k.encode(), v.encode()
    except UnicodeEncodeError as e:
        raise PolicyFileError(bad + f"__metadata__ holds a string that is not UTF-8 ({e})") from None
    body = memoryview(data)[8 + n:]
    for name, info in header.items():
        ok = (
            isinstance(info, dict)
            and info.get("dtype") in _DTYPE_SIZES
            and isinstance(info.get("shape"), list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"])
        )
        if not ok:
            raise PolicyFileError(bad + f"tensor `{name}` has a malformed entry")
        begin, end = info["data_offsets"]
        size = math.prod(info["shape"]) * _DTYPE_SIZES[info["dtype"]]
        if not (0 <= begin <= end <= len(body)) or end - begin != size:
            raise PolicyFileError(bad + f"tensor `{name}`: offsets {info['data_offsets']} do not fit its "
                                  f"{info['dtype']}{info['shape']} in {len(body)} data bytes")
    return header, metadata, body


def _read_shape(meta: dict[str, str], version: int) -> tuple[str, str, int, list[int], str, dict[str, float]]:
    """Architecture, feature set, slots, hidden widths, activation and constants, checked for
    consistency (the same checks, in the same order, as the Rust runtime)."""
    obs_dim = _uint(meta, "obs_dim")
    k = _uint(meta, "num_actions")
    if not 1 <= k <= MAX_WIDTH:
        raise _bad_meta("num_actions", f"{k} is outside 1..={MAX_WIDTH}")
    if version == 1:
        architecture, features = "mlp", "spec"
    else:
        architecture = _meta(meta, "architecture")
        if architecture not in ("mlp", "slots"):
            raise _bad_meta("architecture", f"`{architecture}`, expected `mlp` or `slots`")
        features = _meta(meta, "feature_set")
        if features not in FEATURE_SETS:
            raise _bad_meta("feature_set", f"`{features}`, expected `spec` or `routing`")
        slot_names, context_names = FEATURE_SETS[features]
        for key, want in (("per_slot", len(slot_names)), ("context", len(context_names))):
            got = _uint(meta, key)
            if got != want:
                raise _bad_meta(key, f"{got}, but the `{features}` feature set has {want}")
        for key, names in (("obs.slot_features", slot_names), ("obs.context_features", context_names)):
            text = _meta(meta, key)
            if tuple(p.strip() for p in text.split(",")) != names:
                raise _bad_meta(key, f"`{text}`, but the `{features}` feature set is `{','.join(names)}`")
    slot_names, context_names = FEATURE_SETS[features]
    f, c = len(slot_names), len(context_names)
    if obs_dim != k * f + c:
        raise _bad_meta("obs_dim", f"{obs_dim}, but {k} neighbour slots of {f} features and {c} context "
                                   f"features make {k * f + c}")
    hidden = []
    for part in (p for p in _meta(meta, "hidden").split(",") if p.strip()):
        h = _uint(meta, "hidden", part)
        if not 1 <= h <= MAX_WIDTH:
            raise _bad_meta("hidden", f"width {h} is outside 1..={MAX_WIDTH}")
        hidden.append(h)
        if len(hidden) > MAX_HIDDEN_LAYERS:
            raise _bad_meta("hidden", f"more than {MAX_HIDDEN_LAYERS} layers")
    activation = _meta(meta, "activation")
    if activation not in ("tanh", "relu"):
        raise _bad_meta("activation", f"`{activation}`, expected `tanh` or `relu`")
    constants = {}
    for i, (name, want) in enumerate(CONSTANTS.items()):
        if version == 1 and i >= 5:
            break
        key = f"obs.{name}"
        got = _float(meta, key)
        if _f32(got) != _f32(want):
            raise _bad_meta(key, f"{got:g}, but this runtime normalizes with {want:g}: the policy was "
                                 "trained on other observations")
        constants[name] = got
    return architecture, features, k, hidden, activation, constants


class Policy:
    """A loaded, validated policy: the actor network and its observation layout."""

    def __init__(self, data: bytes):
        header, meta, body = _parse_safetensors(data)
        if _meta(meta, "format") != FORMAT:
            raise _bad_meta("format", f"`{meta['format']}`, expected `{FORMAT}`")
        text = _meta(meta, "format_version")
        version = int(text) if text.strip().isdigit() and text.strip().isascii() else -1
        if not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
            raise _bad_meta("format_version", f"`{text}`; this runtime reads versions {OLDEST_FORMAT_VERSION} to "
                                              f"{FORMAT_VERSION} (a newer meshrl wrote this file?)")
        text = _meta(meta, "checksum")
        digits = text[len("fnv1a64:"):] if text.startswith("fnv1a64:") else ""
        if len(digits) != 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise _bad_meta("checksum", f"`{text}`, expected `fnv1a64:` and 16 hex digits")
        expected = int(digits, 16)

        # The checksum first: an edited entry is corruption, whatever it says.
        actor = bytearray()
        for i in range(MAX_HIDDEN_LAYERS + 2):
            if f"actor.{i}.weight" not in header:
                break
            for part in ("weight", "bias"):
                info = header.get(f"actor.{i}.{part}")
                if info is None:
                    raise PolicyFileError(f"bad policy file: tensor `actor.{i}.{part}`: missing")
                actor += body[info["data_offsets"][0]:info["data_offsets"][1]]
        if version == 1:
            actual = fnv1a64(bytes(actor))
        else:
            if len(meta) > MAX_METADATA_ENTRIES:
                raise PolicyFileError(f"bad policy file: {len(meta)} metadata entries, at most {MAX_METADATA_ENTRIES}")
            actual = metadata_checksum(bytes(actor), meta)
        if actual != expected:
            raise PolicyFileError(f"bad policy file: checksum mismatch (metadata `checksum` fnv1a64:{expected:016x}, "
                                  f"the file's weights and metadata fnv1a64:{actual:016x}): the file is corrupt "
                                  "or was edited")

        architecture, features, k, hidden, activation, constants = _read_shape(meta, version)
        slot_names, context_names = FEATURE_SETS[features]
        f, c = len(slot_names), len(context_names)
        d_in = f + c if architecture == "slots" else k * f + c
        widths = [d_in, *hidden, 1 if architecture == "slots" else k]
        self._layers: list[tuple[np.ndarray, np.ndarray]] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            tensors = []
            for part, shape in (("weight", [d_out, d_in]), ("bias", [d_out])):
                name = f"actor.{i}.{part}"
                info = header.get(name)
                if info is None:
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: missing")
                if info["dtype"] != "F32":
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: dtype is {info['dtype']}, expected F32")
                if info["shape"] != shape:
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: shape is {info['shape']}, the metadata implies {shape}")
                raw = bytes(body[info["data_offsets"][0]:info["data_offsets"][1]])
                values = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
                if not np.all(np.isfinite(values)):
                    j = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: value {j} is {values.ravel()[j]} (weights must be finite)")
                tensors.append(values)
            # Stored transposed, [d_in, d_out], so a batch is one matmul.
            self._layers.append((np.ascontiguousarray(tensors[0].T), tensors[1]))
        if f"actor.{len(self._layers)}.weight" in header:
            raise _bad_meta("hidden", f"says {len(hidden)} hidden layers, the file holds more actor layers")
        self.obs_spec = ObsSpec(num_slots=k, feature_set=features, **constants)
        self.architecture = architecture
        self.feature_set = features
        self.format_version = version
        self.hidden = hidden
        self.activation = activation
        self.checksum = expected
        self.metadata = dict(meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Policy":
        """Reads and validates an exported policy file."""
        with open(path, "rb") as f:
            return cls(f.read())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Policy":
        return cls(data)

    @property
    def obs_dim(self) -> int:
        return self.obs_spec.obs_dim

    @property
    def num_actions(self) -> int:
        return self.obs_spec.num_slots

    @property
    def per_slot(self) -> int:
        return self.obs_spec.per_slot

    @property
    def context(self) -> int:
        return self.obs_spec.context

    @property
    def model_card(self) -> dict[str, Any]:
        """The human-readable model card (architecture, observation layout, training config)."""
        return json.loads(self.metadata.get("model_card", "{}"))

    def _obs(self, obs: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x2 = x.reshape(1, -1) if single else x
        if x2.ndim != 2 or x2.shape[1] != self.obs_dim:
            raise ValueError(f"obs: shape {x.shape}, the policy expects ({self.obs_dim},) or (n, {self.obs_dim})")
        if not np.all(np.isfinite(x2)):
            raise ValueError("obs: contains NaN or infinite entries")
        return x2, single

    def _mask(self, mask: Any, n: int) -> np.ndarray:
        m = np.asarray(mask)
        m2 = m.reshape(1, -1) if m.ndim == 1 else m
        if m2.shape != (n, self.num_actions):
            raise ValueError(f"mask: shape {m.shape}, expected ({self.num_actions},) or ({n}, {self.num_actions})")
        if m2.dtype != bool:
            if m2.dtype.kind not in "iuf":
                raise ValueError(f"mask: dtype {m2.dtype}, expected bool or numbers 0/1")
            bad = ~((m2 == 0) | (m2 == 1))
            if bad.any():
                i = tuple(int(j) for j in np.argwhere(bad)[0])
                raise ValueError(f"mask: entry {i[-1] if m.ndim == 1 else i} is {m2[i]}; masks hold 0 or 1")
            m2 = m2 == 1
        if not np.all(m2.any(axis=1)):
            raise ValueError("mask: no valid neighbour (every slot is masked) in some row")
        return m2

    def _mlp(self, h: np.ndarray) -> np.ndarray:
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            h = h @ w + b
            if i < last:
                h = np.tanh(h) if self.activation == "tanh" else np.maximum(h, 0.0)
        return h

    def logits(self, obs: Any) -> np.ndarray:
        """Unmasked logits, ``(K,)`` for one observation or ``(n, K)`` for a batch."""
        x, single = self._obs(obs)
        if self.architecture == "slots":
            n, k, f = x.shape[0], self.num_actions, self.per_slot
            slots = x[:, :k * f].reshape(n, k, f)
            context = np.broadcast_to(x[:, None, k * f:], (n, k, self.context))
            out = self._mlp(np.concatenate([slots, context], axis=2))[:, :, 0]
        else:
            out = self._mlp(x)
        return out[0] if single else out

    def act(self, obs: Any, mask: Any) -> Any:
        """The next hop: the valid slot with the largest logit (lowest index on ties); an int
        for one observation, an array for a batch."""
        x, single = self._obs(obs)
        m = self._mask(mask, x.shape[0])
        logits = np.where(m, self.logits(x), -np.inf)
        a = np.argmax(logits, axis=1)
        return int(a[0]) if single else a

    def probs(self, obs: Any, mask: Any) -> np.ndarray:
        """Probabilities over slots (0 for masked ones)."""
        x, single = self._obs(obs)
        m = self._mask(mask, x.shape[0])
        logits = np.where(m, self.logits(x), -np.inf)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return p[0] if single else p
