"""meshrl.runtime (NumPy only) reads format version 2 (and 1), acts like the trained policy it
was exported from for both architectures and feature sets, builds observations from raw
measurements, and refuses bad files, edited metadata and bad arguments with clear errors.

Most tests run on files written here with NumPy (no compiled core needed: ``runtime.py`` is
loaded from its file when ``meshrl._core`` is missing); the parity tests against the Rust
trainer's exports need the built wheel.
"""

import ast
import dataclasses
import importlib.util
import json
import math
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CONFIGS, ROOT

RUNTIME_PY = ROOT / "python" / "meshrl" / "runtime.py"

try:
    import meshrl
    import meshrl.ppo
    from meshrl import runtime as rt

    HAVE_CORE = True
except ImportError:
    # The standalone file, as a node without the wheel would use it.
    _spec = importlib.util.spec_from_file_location("meshrl_runtime_standalone", RUNTIME_PY)
    rt = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = rt
    _spec.loader.exec_module(rt)
    HAVE_CORE = False

needs_core = pytest.mark.skipif(not HAVE_CORE, reason="needs the built wheel (meshrl._core)")

Policy, PolicyFileError = rt.Policy, rt.PolicyFileError
SlotMeasurement, NodeContext = rt.SlotMeasurement, rt.NodeContext

SLOT_NAMES = {
    "spec": ["rssi", "latency", "packet_loss", "hop_count_to_destination", "bandwidth", "trust"],
    "routing": ["rssi", "latency", "packet_loss", "hop_count_to_destination", "bandwidth", "trust",
                "etx_to_destination", "etx_excess", "latency_to_destination", "queue", "visited"],
}
CONTEXT_NAMES = {"spec": ["queue"], "routing": ["queue", "ttl_left", "hops_taken"]}
# As the Rust exporter writes them (f32's Display).
CONSTANT_TEXT = {"rssi_center_dbm": "-50", "rssi_scale_db": "50", "latency_half_ms": "50", "hops_scale": "32",
                 "bandwidth_scale_mbps": "65", "etx_half": "4", "etx_excess_scale": "4", "path_latency_half_ms": "100"}
VARIANTS = [("mlp", "spec"), ("mlp", "routing"), ("slots", "spec"), ("slots", "routing")]


# ---------------------------------------------------------------------------------------------
# Files written here, independently of runtime.py: the format as documented.

def fnv(data, h=0xCBF29CE484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def split(data):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header, body):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def actor_bytes(header, body):
    out = b""
    i = 0
    while f"actor.{i}.weight" in header:
        for part in ("weight", "bias"):
            a, b = header[f"actor.{i}.{part}"]["data_offsets"]
            out += body[a:b]
        i += 1
    return out


def sign(header, body, version=2):
    """Sets the metadata checksum so it holds for the file as it is."""
    meta = header["__metadata__"]
    h = fnv(actor_bytes(header, body))
    if version == 2:
        for key in sorted(k for k in meta if k != "checksum"):
            h = fnv(key.encode() + b"\0" + meta[key].encode() + b"\n", h)
    meta["checksum"] = f"fnv1a64:{h:016x}"


def write_policy(architecture, features, k=8, hidden=(16, 16), activation="tanh", seed=0):
    """A version 2 export with random weights, and its layers (weight [d_out, d_in], bias)."""
    f, c = len(SLOT_NAMES[features]), len(CONTEXT_NAMES[features])
    d_in = f + c if architecture == "slots" else k * f + c
    widths = [d_in, *hidden, 1 if architecture == "slots" else k]
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0, 1 / math.sqrt(a), (b, a)).astype("<f4"), rng.normal(0, 0.1, b).astype("<f4"))
              for a, b in zip(widths[:-1], widths[1:])]
    header, body = {}, b""
    for i, (w, b) in enumerate(layers):
        for part, t in (("weight", w), ("bias", b)):
            header[f"actor.{i}.{part}"] = {"dtype": "F32", "shape": list(t.shape),
                                           "data_offsets": [len(body), len(body) + t.nbytes]}
            body += t.tobytes()
    meta = {
        "format": "meshrl-policy", "format_version": "2", "meshrl_version": "0.1.0",
        "obs_dim": str(k * f + c), "num_actions": str(k), "architecture": architecture, "feature_set": features,
        "per_slot": str(f), "context": str(c), "hidden": ",".join(map(str, hidden)), "activation": activation,
        "obs.slot_features": ",".join(SLOT_NAMES[features]), "obs.context_features": ",".join(CONTEXT_NAMES[features]),
        "includes_critic": "false", "training_config": "null", "model_card": json.dumps({"name": "test"}),
    }
    meta.update({f"obs.{name}": text for name, text in CONSTANT_TEXT.items()})
    header["__metadata__"] = meta
    sign(header, body)
    return join(header, body), layers


def reference_logits(layers, activation, architecture, obs, k, f):
    """Logits in float64, one slot at a time for `slots`."""
    def mlp(x):
        for i, (w, b) in enumerate(layers):
            x = x @ w.T.astype(np.float64) + b
            if i < len(layers) - 1:
                x = np.tanh(x) if activation == "tanh" else np.maximum(x, 0)
        return x
    obs = obs.astype(np.float64)
    if architecture == "mlp":
        return mlp(obs)
    context = obs[:, k * f:]
    return np.stack([mlp(np.concatenate([obs[:, s * f:(s + 1) * f], context], axis=1))[:, 0] for s in range(k)], axis=1)


def random_obs(n, k, features, seed):
    rng = np.random.default_rng(seed)
    f, c = len(SLOT_NAMES[features]), len(CONTEXT_NAMES[features])
    obs = rng.uniform(-1, 1, (n, k * f + c)).astype(np.float32)
    mask = rng.random((n, k)) < 0.6
    mask[np.arange(n), rng.integers(0, k, n)] = True
    obs[:, :k * f].reshape(n, k, f)[~mask] = 0
    return obs, mask


def edit(data, fn, resign=False):
    header, body = split(data)
    fn(header)
    if resign:
        sign(header, body)
    return join(header, body)


def set_meta(key, value):
    def fn(h):
        if value is None:
            del h["__metadata__"][key]
        else:
            h["__metadata__"][key] = value
    return fn


# ---------------------------------------------------------------------------------------------
# NumPy only.

def test_runtime_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(RUNTIME_PY.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "json", "math", "os", "struct", "dataclasses", "typing", "numpy"}, imported


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("architecture, features", VARIANTS)
def test_logits_and_actions_match_the_documented_network(architecture, features, activation):
    data, layers = write_policy(architecture, features, activation=activation)
    policy = Policy.from_bytes(data)
    k, f = 8, len(SLOT_NAMES[features])
    assert (policy.architecture, policy.feature_set, policy.format_version) == (architecture, features, 2)
    assert (policy.per_slot, policy.context, policy.num_actions) == (f, len(CONTEXT_NAMES[features]), k)
    assert policy.obs_dim == k * f + policy.context and policy.hidden == [16, 16]
    assert policy.checksum == int(split(data)[0]["__metadata__"]["checksum"][8:], 16)
    obs, mask = random_obs(500, k, features, seed=1)
    want = reference_logits(layers, activation, architecture, obs, k, f)
    got = policy.logits(obs)
    assert got.shape == (500, k) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-5
    actions = policy.act(obs, mask)
    np.testing.assert_array_equal(actions, np.where(mask, want, -np.inf).argmax(axis=1))
    assert policy.act(obs[7], mask[7]) == actions[7]
    np.testing.assert_allclose(policy.logits(obs[7]), got[7], atol=1e-6)
    probs = policy.probs(obs, mask)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(probs[~mask] == 0)


def test_slots_policies_are_permutation_equivariant():
    policy = Policy.from_bytes(write_policy("slots", "routing")[0])
    obs, _ = random_obs(50, 8, "routing", seed=2)
    perm = np.random.default_rng(3).permutation(8)
    slots = obs[:, :88].reshape(50, 8, 11)
    permuted = np.concatenate([slots[:, perm].reshape(50, 88), obs[:, 88:]], axis=1)
    np.testing.assert_allclose(policy.logits(permuted), policy.logits(obs)[:, perm], atol=1e-6)


def test_fixture_files_are_valid_safetensors():
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    data, layers = write_policy("slots", "routing")
    tensors = safetensors_numpy.load(data)
    np.testing.assert_array_equal(tensors["actor.0.weight"], layers[0][0])
    assert tensors["actor.0.weight"].shape == (16, 14) and tensors["actor.2.weight"].shape == (1, 16)


@pytest.mark.parametrize("architecture, features", [("slots", "routing"), ("mlp", "spec")])
@pytest.mark.parametrize(
    "key, value",
    [("activation", "relu"), ("architecture", "OTHER"), ("feature_set", "OTHER"), ("obs.etx_half", "4.5"),
     ("obs.rssi_center_dbm", "-51"), ("hidden", "16"), ("model_card", "{}"), ("meshrl_version", None),
     ("an_extra_key", "x")],
)
def test_edited_metadata_fails_the_checksum(architecture, features, key, value):
    data, _ = write_policy(architecture, features)
    if value == "OTHER":
        value = {"mlp": "slots", "slots": "mlp", "spec": "routing", "routing": "spec"}[split(data)[0]["__metadata__"][key]]
    with pytest.raises(PolicyFileError, match="checksum mismatch"):
        Policy.from_bytes(edit(data, set_meta(key, value)))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("obs_dim", "44", "metadata `obs_dim`: 44"),
        ("obs_dim", "many", "not a non-negative integer"),
        ("num_actions", "0", "metadata `num_actions`"),
        ("num_actions", "7", "metadata `obs_dim`: 91, but 7 neighbour slots"),
        ("per_slot", "6", "metadata `per_slot`: 6, but the `routing` feature set has 11"),
        ("context", "1", "metadata `context`: 1"),
        ("context", None, "metadata `context`: missing"),
        ("feature_set", "spec", "metadata `per_slot`: 11, but the `spec` feature set has 6"),
        ("feature_set", "fancy", "metadata `feature_set`: `fancy`"),
        ("architecture", "mlp", r"tensor `actor.0.weight`: shape is \[16, 14\]"),
        ("architecture", "transformer", "metadata `architecture`: `transformer`"),
        ("architecture", None, "metadata `architecture`: missing"),
        ("hidden", "16", "actor.1.weight"),
        ("hidden", "16,16,16", "actor.2.weight"),
        ("hidden", "16,0", "width 0"),
        ("activation", "gelu", "expected `tanh` or `relu`"),
        ("obs.hops_scale", "-1", "metadata `obs.hops_scale`: -1, but this runtime normalizes with 32"),
        ("obs.etx_half", "5", "metadata `obs.etx_half`"),
        ("obs.rssi_center_dbm", "NaN", "not a finite number"),
        ("obs.latency_half_ms", None, "`obs.latency_half_ms`: missing"),
        ("obs.path_latency_half_ms", None, "`obs.path_latency_half_ms`: missing"),
        ("obs.slot_features", "rssi,latency", "metadata `obs.slot_features`"),
        ("obs.context_features", "queue", "metadata `obs.context_features`"),
        ("format", "pytorch", "metadata `format`"),
        ("format_version", "3", "metadata `format_version`: `3`; this runtime reads versions 1 to 2"),
        ("format_version", "0", "metadata `format_version`: `0`"),
    ],
)
def test_inconsistent_metadata_is_an_error_naming_the_key(key, value, message):
    # Re-signed: the checksum holds, so the validation itself must catch the edit.
    data, _ = write_policy("slots", "routing")
    with pytest.raises(PolicyFileError, match=message):
        Policy.from_bytes(edit(data, set_meta(key, value), resign=True))


def test_checksum_entries_and_container_errors():
    data, _ = write_policy("slots", "routing")
    for change, message in [
        (set_meta("checksum", "fnv1a64:0000000000000000"), "checksum mismatch"),
        (set_meta("checksum", "crc32:1234"), "metadata `checksum`"),
        (lambda h: h.pop("__metadata__"), "metadata `format`: missing"),
        (lambda h: h["actor.0.weight"].update(dtype="I32"), "dtype is I32"),
        (lambda h: h["actor.1.bias"].update(dtype="F16"), "offsets"),
        (lambda h: h["actor.0.weight"].update(shape=h["actor.0.weight"]["shape"][::-1]), "shape is"),
        (lambda h: h.update({"actor.2.b": h.pop("actor.2.bias")}), r"actor.2.bias`: missing"),
    ]:
        with pytest.raises(PolicyFileError, match=message):
            Policy.from_bytes(edit(data, change))


def test_version_1_files_still_load():
    data, layers = write_policy("mlp", "spec")
    header, body = split(data)
    meta = header["__metadata__"]
    for key in ("architecture", "feature_set", "per_slot", "context", "obs.etx_half", "obs.etx_excess_scale",
                "obs.path_latency_half_ms", "obs.slot_features", "obs.context_features"):
        del meta[key]
    meta["format_version"] = "1"
    sign(header, body, version=1)
    old = Policy.from_bytes(join(header, body))
    assert (old.format_version, old.architecture, old.feature_set, old.obs_dim) == (1, "mlp", "spec", 49)
    obs, _ = random_obs(20, 8, "spec", seed=4)
    np.testing.assert_array_equal(old.logits(obs), Policy.from_bytes(data).logits(obs))
    # Version 1's checksum covers the actor only: the card may change, a weight may not.
    meta["model_card"] = "{}"
    Policy.from_bytes(join(header, body))
    flipped = bytearray(body)
    flipped[3] ^= 1
    with pytest.raises(PolicyFileError, match="checksum mismatch"):
        Policy.from_bytes(join(header, bytes(flipped)))
    # A version-1 checksum on a version-2 file is a mismatch.
    header2, body2 = split(data)
    sign(header2, body2, version=1)
    with pytest.raises(PolicyFileError, match="checksum mismatch"):
        Policy.from_bytes(join(header2, body2))


def test_truncated_corrupt_and_random_files_are_errors():
    data, _ = write_policy("slots", "routing")
    (n,) = struct.unpack("<Q", data[:8])
    for length in list(range(0, 8 + n + 8, 7)) + list(range(8 + n + 8, len(data), 97)):
        with pytest.raises(PolicyFileError):
            Policy.from_bytes(data[:length])
    header, body = split(data)
    start = header["actor.1.weight"]["data_offsets"][0]
    flipped = bytearray(body)
    flipped[start + 5] ^= 0x10
    with pytest.raises(PolicyFileError, match="checksum mismatch"):
        Policy.from_bytes(join(header, bytes(flipped)))
    nan = bytearray(body)
    nan[start:start + 4] = struct.pack("<f", float("nan"))
    sign(header, bytes(nan))
    with pytest.raises(PolicyFileError, match="finite"):
        Policy.from_bytes(join(header, bytes(nan)))
    rng = np.random.default_rng(0)
    for _ in range(300):
        junk = rng.integers(0, 256, rng.integers(0, 400)).astype(np.uint8).tobytes()
        with pytest.raises(PolicyFileError):
            Policy.from_bytes(junk)
        with pytest.raises(PolicyFileError):
            Policy.from_bytes(struct.pack("<Q", len(junk)) + junk)


@pytest.mark.parametrize("architecture", ["mlp", "slots"])
def test_bad_masks_and_observations_raise_value_error(architecture):
    policy = Policy.from_bytes(write_policy(architecture, "routing")[0])
    obs, ones = np.zeros(91, np.float32), np.ones(8)
    for bad, message in [(np.nan, "mask: entry 2 is nan"), (-1, "mask: entry 2 is -1"), (2, "mask: entry 2 is 2"),
                         (0.5, "entry 2 is 0.5")]:
        m = ones.copy() if isinstance(bad, float) else ones.astype(int)
        m[2] = bad
        for call in (policy.act, policy.probs):
            with pytest.raises(ValueError, match=message):
                call(obs, m)
    with pytest.raises(ValueError, match="mask: dtype"):
        policy.act(obs, np.array(["1"] * 8))
    batch = np.ones((3, 8))
    batch[1, 4] = -1
    with pytest.raises(ValueError, match=r"mask: entry \(1, 4\) is -1"):
        policy.act(np.zeros((3, 91), np.float32), batch)
    # 0/1 numbers and bools are masks.
    assert policy.act(obs, np.eye(8)[3]) == 3
    assert policy.act(obs, np.eye(8, dtype=int)[5]) == 5
    assert policy.act(obs, np.eye(8, dtype=bool)[6]) == 6
    with pytest.raises(ValueError, match="shape"):
        policy.act(obs[:-1], ones)
    with pytest.raises(ValueError, match="no valid neighbour"):
        policy.act(obs, np.zeros(8, bool))
    with pytest.raises(ValueError, match="NaN"):
        policy.act(np.full(91, np.nan, np.float32), ones)
    with pytest.raises(ValueError, match="mask"):
        policy.probs(obs, np.ones(9, bool))
    with pytest.raises(FileNotFoundError):
        Policy.load("no/such/policy.safetensors")


def slot(**kw):
    base = dict(rssi_dbm=-60.0, latency_ms=50.0, packet_loss=0.1, hops_to_destination=40, bandwidth_mbps=32.5,
                trust=0.8, etx_to_destination=4.0, latency_to_destination_ms=100.0, queue=0.25, visited=True)
    base.update(kw)
    return SlotMeasurement(**base)


def test_built_observations_use_the_documented_normalization():
    policy = Policy.from_bytes(write_policy("slots", "routing")[0])
    table = [None, slot(), None, slot(packet_loss=0.0, etx_to_destination=1.0, visited=False), None,
             slot(etx_to_destination=math.inf, latency_to_destination_ms=math.inf), None, None]
    obs, mask = policy.obs_spec.build(table, NodeContext(queue=0.5, hops_taken=8, ttl=32))
    assert obs.dtype == np.float32 and obs.shape == (91,)
    rows = obs[:88].reshape(8, 11)
    excess = (1 / 0.9 + 4 - 2) / 4  # this link's ETX + advertised, minus the ETX route's 1 + 1
    np.testing.assert_allclose(rows[1], [-0.2, 0.5, 0.1, 1.0, 0.5, 0.8, 0.5, excess, 0.5, 0.25, 1.0], rtol=1e-6)
    assert rows[3, 7] == 0 and rows[3, 10] == 0, "the ETX route has no excess"
    assert rows[5, 6] == rows[5, 7] == rows[5, 8] == 1.0, "no route advertised"
    assert not rows[[0, 2, 4, 6, 7]].any()
    np.testing.assert_allclose(obs[88:], [0.5, 0.75, 0.25])
    assert mask.tolist() == [False, True, False, True, False, True, False, False]
    policy.act(obs, mask)
    # No finite route anywhere: every excess is 1. NaN also means "no route".
    obs, _ = policy.obs_spec.build([slot(etx_to_destination=math.nan)] + [None] * 7, NodeContext(ttl=1))
    assert obs[6] == obs[7] == 1.0

    # The spec set reads the first six fields and the queue; NeighborMeasurement is the old name.
    spec = Policy.from_bytes(write_policy("mlp", "spec")[0])
    m = rt.NeighborMeasurement(rssi_dbm=-60.0, latency_ms=50.0, packet_loss=0.1, hops_to_destination=None,
                               bandwidth_mbps=32.5, trust=0.8)
    obs, mask = spec.obs_spec.build([None, m] + [None] * 6, queue=0.25)
    np.testing.assert_allclose(obs[6:12], [-0.2, 0.5, 0.1, 1.0, 0.5, 0.8], rtol=1e-6)
    assert obs[-1] == 0.25 and not obs[:6].any() and obs.shape == (49,)
    assert mask.tolist() == [False, True] + [False] * 6
    assert spec.act(obs, mask) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(latency_ms=-1.0), r"slots\[2\].latency_ms: -1.0"),
        (dict(rssi_dbm=math.nan), r"slots\[2\].rssi_dbm: NaN"),
        (dict(packet_loss=1.5), r"slots\[2\].packet_loss"),
        (dict(packet_loss=math.nan), r"slots\[2\].packet_loss"),
        (dict(trust=-0.1), r"slots\[2\].trust"),
        (dict(bandwidth_mbps=math.inf), r"slots\[2\].bandwidth_mbps"),
        (dict(hops_to_destination=-3), r"slots\[2\].hops_to_destination"),
        (dict(hops_to_destination=2.5), r"slots\[2\].hops_to_destination"),
        (dict(etx_to_destination=-2.0), r"slots\[2\].etx_to_destination"),
        (dict(latency_to_destination_ms=-math.inf), r"slots\[2\].latency_to_destination_ms"),
        (dict(queue=2.0), r"slots\[2\].queue"),
        (dict(visited=2), r"slots\[2\].visited"),
        (dict(visited=math.nan), r"slots\[2\].visited"),
        (dict(visited=-1), r"slots\[2\].visited"),
    ],
)
def test_bad_measurements_raise_value_error_naming_the_argument(change, message):
    spec = Policy.from_bytes(write_policy("slots", "routing")[0]).obs_spec
    table = [None, None, slot(**change)] + [None] * 5
    with pytest.raises(ValueError, match=message):
        spec.build(table, NodeContext(queue=0.5, hops_taken=1, ttl=32))


def test_bad_contexts_and_tables_raise_value_error():
    spec = Policy.from_bytes(write_policy("slots", "routing")[0]).obs_spec
    table = [slot()] + [None] * 7
    good = NodeContext(queue=0.5, hops_taken=1, ttl=32)
    spec.build(table, good)
    for context, message in [
        (dataclasses.replace(good, queue=math.nan), "context.queue: NaN"),
        (dataclasses.replace(good, queue=-0.5), "context.queue"),
        (dataclasses.replace(good, hops_taken=33), "context: hops_taken 33 and ttl 32"),
        (dataclasses.replace(good, hops_taken=0, ttl=0), "context: hops_taken 0 and ttl 0"),
        (dataclasses.replace(good, ttl=-1), "context.ttl"),
        (0.5, "context: float"),
    ]:
        with pytest.raises(ValueError, match=message):
            spec.build(table, context)
    with pytest.raises(ValueError, match="slots: 1 slots, the policy has 8"):
        spec.build(table[:1], good)
    with pytest.raises(ValueError, match=r"slots\[1\]: dict"):
        spec.build([None, {"rssi_dbm": -60}] + [None] * 6, good)
    with pytest.raises(ValueError, match="either context= or queue="):
        spec.build(table, good, queue=0.5)
    # The spec set ignores the routing fields and the TTL.
    spec_set = Policy.from_bytes(write_policy("mlp", "spec")[0]).obs_spec
    spec_set.build([slot(queue=7.0, etx_to_destination=-1.0)] + [None] * 7, NodeContext(queue=0.5))


measurements = st.builds(
    SlotMeasurement,
    rssi_dbm=st.floats(-100, 0),
    latency_ms=st.floats(0, 1e4),
    packet_loss=st.floats(0, 1),
    hops_to_destination=st.one_of(st.none(), st.integers(0, 1000)),
    bandwidth_mbps=st.floats(0, 65),
    trust=st.floats(0, 1),
    etx_to_destination=st.one_of(st.floats(0, 1e3), st.just(math.inf)),
    latency_to_destination_ms=st.one_of(st.floats(0, 1e5), st.just(math.inf)),
    queue=st.floats(0, 1),
    visited=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(table=st.lists(st.one_of(st.none(), measurements), min_size=8, max_size=8), hops=st.integers(0, 32))
def test_built_observations_are_bounded_and_empty_slots_zero(table, hops):
    spec = rt.ObsSpec(num_slots=8, feature_set="routing")
    obs, mask = spec.build(table, NodeContext(queue=0.3, hops_taken=hops, ttl=32))
    rows = obs[:88].reshape(8, 11)
    assert np.all(np.isfinite(obs))
    assert mask.tolist() == [m is not None for m in table]
    assert not rows[~mask].any()
    assert np.all((rows[mask][:, 1:] >= 0) & (rows[mask][:, 1:] <= 1 + 1e-6))
    excess = rows[mask, 7]
    finite = [m is not None and math.isfinite(m.etx_to_destination) for m in table]
    if any(finite):
        assert excess.min() == 0.0, "the best route has no excess"


# ---------------------------------------------------------------------------------------------
# Against the Rust trainer's exports (the built wheel).

SMALL_PPO = {"num_envs": 64, "num_steps": 64, "epochs": 4, "minibatch_size": 1024, "learning_rate": 0.001,
             "clip_value_loss": False, "seed": 1}


@pytest.fixture(scope="module", params=VARIANTS, ids=["-".join(v) for v in VARIANTS])
def trained(request, tmp_path_factory):
    architecture, features = request.param
    if not HAVE_CORE:
        pytest.skip("needs the built wheel (meshrl._core)")
    trainer = meshrl.ppo.Trainer(str(CONFIGS / "env" / "small.toml"), {**SMALL_PPO, "architecture": architecture},
                                 features=features, envs_per_twin=4, reward={"hop_cost": 0.5})
    trainer.train(60_000)
    path = tmp_path_factory.mktemp("export") / f"{architecture}-{features}.safetensors"
    checksum = trainer.export(path)
    return trainer, path, checksum, architecture, features


def observations(n, seed, features):
    """n observations (with at least one valid neighbour) a random policy meets."""
    env = meshrl.MeshRoutingVecEnv(64, config=str(CONFIGS / "env" / "small.toml"), envs_per_twin=8, features=features)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out_obs, out_mask = [], []
    while sum(len(o) for o in out_obs) < n:
        mask = info["action_mask"].astype(bool)
        keep = mask.any(axis=1)
        out_obs.append(obs[keep].copy())
        out_mask.append(mask[keep].copy())
        scores = np.where(mask, rng.random(mask.shape), -1.0)
        obs, _, _, _, info = env.step(scores.argmax(axis=1))
    env.close()
    return np.concatenate(out_obs)[:n], np.concatenate(out_mask)[:n]


@needs_core
def test_numpy_runtime_matches_the_trained_policy_on_10k_observations(trained):
    trainer, path, checksum, architecture, features = trained
    policy = Policy.load(path)
    assert policy.checksum == checksum
    assert (policy.architecture, policy.feature_set, policy.format_version) == (architecture, features, 2)
    per_slot = len(SLOT_NAMES[features])
    assert (policy.obs_dim, policy.num_actions, policy.hidden) == (8 * per_slot + len(CONTEXT_NAMES[features]), 8, [64, 64])
    obs, mask = observations(10_000, seed=3, features=features)
    want = trainer.logits(obs)
    got = policy.logits(obs)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert np.max(want.max(axis=1) - want.min(axis=1)) > 0.1, "logits barely vary: was the policy trained?"
    actions = policy.act(obs, mask)
    burn = trainer.get_action(obs, mask, deterministic=True)
    # Only a tie may go either way: two slots whose logits are equal to rounding (the `slots`
    # actor scores identical neighbours identically).
    rows = np.flatnonzero(actions != burn)
    assert len(rows) <= len(obs) // 1000, f"{len(rows)} next hops differ"
    np.testing.assert_allclose(want[rows, actions[rows]], want[rows, burn[rows]], atol=1e-5)
    assert len(np.unique(actions)) >= 3, "a trained policy uses more than a couple of slots"
    assert policy.act(obs[5], mask[5]) == actions[5]
    probs = policy.probs(obs, mask)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(probs[~mask] == 0)
    # The most probable slot is the one `act` picks, but for ties again: two logits equal to
    # rounding can round to the same probability, where argmax takes the first.
    ties = np.flatnonzero(probs.argmax(axis=1) != actions)
    assert len(ties) <= len(obs) // 1000, f"{len(ties)} rows where act is not the most probable slot"
    np.testing.assert_allclose(probs[ties, actions[ties]], probs[ties].max(axis=1), rtol=1e-6)


@needs_core
def test_exports_detect_edited_metadata_and_load_with_the_safetensors_package(trained, tmp_path):
    trainer, path, _, architecture, features = trained
    data = path.read_bytes()
    for key, value in [("activation", "relu"), ("obs.etx_half", "5"),
                       ("architecture", "mlp" if architecture == "slots" else "slots")]:
        with pytest.raises(PolicyFileError, match="checksum mismatch"):
            Policy.from_bytes(edit(data, set_meta(key, value)))
    card = Policy.load(path).model_card
    assert card["observation"]["feature_set"] == features
    assert card["observation"]["constants"]["rssi_center_dbm"] == -50.0
    assert card["training_config"]["train"]["ppo"]["architecture"] == architecture
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = safetensors_numpy.load_file(str(path))
    assert sorted(tensors) == [f"actor.{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    policy = Policy.load(path)
    d_in = policy.per_slot + policy.context if architecture == "slots" else policy.obs_dim
    assert tensors["actor.0.weight"].shape == (64, d_in) and tensors["actor.0.weight"].dtype == np.float32
    with_critic = tmp_path / "critic.safetensors"
    trainer.export(with_critic, critic=True)
    assert "critic.0.weight" in safetensors_numpy.load_file(str(with_critic))
    critic = Policy.load(with_critic)
    assert critic.checksum != policy.checksum  # `includes_critic` differs, and the checksum covers it
    obs = observations(10, seed=4, features=features)[0]
    np.testing.assert_array_equal(critic.logits(obs), policy.logits(obs))
