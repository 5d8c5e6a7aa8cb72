"""meshrl.runtime (NumPy only) acts like the trained policy it was exported from; bad files
are clear errors; the export loads with the standard safetensors package."""

import json
import struct

import numpy as np
import pytest

import meshrl
import meshrl.ppo
from meshrl.runtime import NeighborMeasurement, Policy, PolicyFileError

from conftest import CONFIGS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    trainer = meshrl.ppo.Trainer(config=CONFIGS / "train" / "small.toml")
    trainer.train(60_000)
    path = tmp_path_factory.mktemp("export") / "policy.safetensors"
    checksum = trainer.export(path)
    return trainer, path, checksum


def observations(n, seed):
    """n observations (with at least one valid neighbour) a random policy meets."""
    env = meshrl.MeshRoutingVecEnv(64, config=str(CONFIGS / "env" / "small.toml"), envs_per_twin=8)
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


def test_numpy_runtime_matches_trained_policy_on_10k_observations(trained):
    trainer, path, checksum = trained
    policy = Policy.load(path)
    assert policy.checksum == checksum
    assert (policy.obs_dim, policy.num_actions, policy.hidden) == (49, 8, [64, 64])
    obs, mask = observations(10_000, seed=3)
    want = trainer.logits(obs)
    got = policy.logits(obs)
    assert np.max(np.abs(got - want)) <= 1e-5
    actions = policy.act(obs, mask)
    np.testing.assert_array_equal(actions, trainer.get_action(obs, mask, deterministic=True))
    assert len(np.unique(actions)) >= 3, "a trained policy uses more than a couple of slots"
    # One observation at a time gives the same as the batch.
    assert policy.act(obs[5], mask[5]) == actions[5]
    probs = policy.probs(obs, mask)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(probs[~mask] == 0)
    np.testing.assert_array_equal(probs.argmax(axis=1), actions)


def test_export_loads_with_the_safetensors_package_and_carries_a_model_card(trained, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    trainer, path, _ = trained
    tensors = safetensors_numpy.load_file(str(path))
    assert sorted(tensors) == [f"actor.{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    assert tensors["actor.0.weight"].shape == (64, 49) and tensors["actor.0.weight"].dtype == np.float32
    card = Policy.load(path).model_card
    assert card["training_config"]["env"]["env"]["envs_per_twin"] == 4
    assert card["training_config"]["train"]["ppo"]["learning_rate"] == trainer.ppo_config["learning_rate"]
    assert card["observation"]["constants"]["rssi_center_dbm"] == -50.0
    with_critic = tmp_path / "critic.safetensors"
    trainer.export(with_critic, critic=True)
    assert "critic.2.weight" in safetensors_numpy.load_file(str(with_critic))
    assert Policy.load(with_critic).checksum == Policy.load(path).checksum


def test_build_observation_uses_the_exported_constants(trained):
    policy = Policy.load(trained[1])
    m = NeighborMeasurement(rssi_dbm=-60.0, latency_ms=50.0, packet_loss=0.1, hops_to_destination=40,
                            bandwidth_mbps=32.5, trust=0.8)
    obs, mask = policy.obs_spec.build([None, m] + [None] * 6, queue=0.25)
    np.testing.assert_allclose(obs[6:12], [-0.2, 0.5, 0.1, 1.0, 0.5, 0.8], rtol=1e-6)
    assert obs[-1] == 0.25 and not obs[:6].any()
    assert mask.tolist() == [False, True] + [False] * 6
    assert policy.act(obs, mask) == 1
    with pytest.raises(ValueError, match="slots"):
        policy.obs_spec.build([m], queue=0.0)


def split(data):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header, body):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def edit(data, fn):
    header, body = split(data)
    fn(header)
    return join(header, body)


def set_meta(key, value):
    def fn(h):
        if value is None:
            del h["__metadata__"][key]
        else:
            h["__metadata__"][key] = value
    return fn


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h["actor.0.weight"].update(dtype="I32"), "dtype is I32"),
        (lambda h: h["actor.1.bias"].update(dtype="F16"), "offsets"),
        (lambda h: h["actor.0.weight"].update(shape=h["actor.0.weight"]["shape"][::-1]), "shape is"),
        (lambda h: h.update({"actor.2.b": h.pop("actor.2.bias")}), "actor.2.bias`: missing"),
        (set_meta("obs_dim", "44"), "metadata `obs_dim`"),
        (set_meta("hidden", "64"), "actor.1.weight"),
        (set_meta("hidden", "64,64,64"), "actor.2.weight"),
        (set_meta("activation", "gelu"), "expected `tanh` or `relu`"),
        (set_meta("format", "pytorch"), "metadata `format`"),
        (set_meta("format_version", "2"), "reads version 1"),
        (set_meta("checksum", "fnv1a64:0000000000000000"), "checksum mismatch"),
        (set_meta("obs.hops_scale", "-1"), "must be positive"),
        (set_meta("obs.latency_half_ms", None), "`obs.latency_half_ms`: missing"),
        (lambda h: h.pop("__metadata__"), "metadata `format`: missing"),
    ],
)
def test_bad_files_are_clear_errors(trained, change, message):
    data = trained[1].read_bytes()
    with pytest.raises(PolicyFileError, match=message.replace("(", r"\(")):
        Policy.from_bytes(edit(data, change))


def test_truncated_corrupt_and_random_files_are_errors(trained):
    data = trained[1].read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for length in list(range(0, 8 + n + 8, 7)) + list(range(8 + n + 8, len(data), 997)):
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
    with pytest.raises(PolicyFileError, match="finite"):
        Policy.from_bytes(join(header, bytes(nan)))
    rng = np.random.default_rng(0)
    for _ in range(300):
        junk = rng.integers(0, 256, rng.integers(0, 400)).astype(np.uint8).tobytes()
        with pytest.raises(PolicyFileError):
            Policy.from_bytes(junk)
        with pytest.raises(PolicyFileError):
            Policy.from_bytes(struct.pack("<Q", len(junk)) + junk)


def test_bad_calls_raise_value_error(trained):
    policy = Policy.load(trained[1])
    obs, mask = np.zeros(49, np.float32), np.ones(8, bool)
    with pytest.raises(ValueError, match="shape"):
        policy.act(obs[:-1], mask)
    with pytest.raises(ValueError, match="no valid neighbour"):
        policy.act(obs, np.zeros(8, bool))
    with pytest.raises(ValueError, match="NaN"):
        policy.act(np.full(49, np.nan, np.float32), mask)
    with pytest.raises(ValueError, match="mask"):
        policy.probs(obs, np.ones(9, bool))
    with pytest.raises(FileNotFoundError):
        Policy.load("no/such/policy.safetensors")
