"""meshrl.eval.compare: same packets for every policy, sane statistics, clear errors."""

import numpy as np
import pytest

import meshrl
import meshrl.eval

from conftest import CONFIGS


def test_compare_returns_aligned_arrays_and_summaries():
    r = meshrl.eval.compare(["baseline:etx", "baseline:shortest_path"], CONFIGS / "eval" / "lossy.toml", episodes=600, seed=1)
    assert r["scenario"] == "lossy" and r["policies"] == ["baseline:etx", "baseline:shortest_path"]
    etx, sp = (r["episodes"][p] for p in r["policies"])
    assert len(etx["delivered"]) == 600  # exactly the packets asked for
    np.testing.assert_array_equal(etx["source"], sp["source"])
    np.testing.assert_array_equal(etx["destination"], sp["destination"])
    s = r["summary"]["baseline:etx"]
    assert s["delivery_ratio"] == pytest.approx(etx["delivered"].mean())
    lo, hi = s["delivery_ci"]
    assert lo < s["delivery_ratio"] < hi
    (pair,) = r["paired"]
    assert pair["a"] == "baseline:etx" and pair["b"] == "baseline:shortest_path"
    diff = etx["delivered"].astype(float).mean() - sp["delivered"].astype(float).mean()
    assert pair["delivery_diff"] == pytest.approx(diff)
    assert pair["delivery_significant"] and diff > 0.1  # ETX avoids the lossy long links


def test_compare_is_deterministic_and_accepts_dicts():
    cfg = meshrl.load_config(CONFIGS / "eval" / "churn.toml")
    a = meshrl.eval.compare(["baseline:q_routing"], cfg, episodes=300, seed=5, num_envs=50)
    b = meshrl.eval.compare(["baseline:q_routing"], cfg, episodes=300, seed=5, num_envs=50)
    for key, arr in a["episodes"]["baseline:q_routing"].items():
        np.testing.assert_array_equal(arr, b["episodes"]["baseline:q_routing"][key])


def test_compare_all_baselines_and_errors():
    r = meshrl.eval.compare(["baseline:all"], CONFIGS / "eval" / "static.toml", episodes=256)
    assert len(r["policies"]) == len(meshrl.eval.BASELINES)
    with pytest.raises(ValueError, match="unknown policy"):
        meshrl.eval.compare(["baseline:magic"], CONFIGS / "eval" / "static.toml")
    with pytest.raises(ValueError, match="episodes"):
        meshrl.eval.compare(["baseline:etx"], CONFIGS / "eval" / "static.toml", episodes=0)
    with pytest.raises(FileNotFoundError):
        meshrl.eval.compare(["baseline:etx"], "missing.toml")


def first_valid(obs, mask):
    """The first valid slot of each row."""
    return (mask > 0).argmax(axis=1)


def test_compare_takes_a_python_policy_on_the_same_packets():
    calls = []

    def act(obs, mask):
        calls.append((obs.shape, obs.dtype, mask.shape, mask.dtype))
        return first_valid(obs, mask)

    scenario = CONFIGS / "eval" / "static.toml"  # static: every packet pairs up (churn: the first of each env)
    r = meshrl.eval.compare([("first", act), "baseline:etx"], scenario, episodes=500, seed=2, num_envs=50)
    assert r["policies"] == ["first", "baseline:etx"]
    mine, etx = r["episodes"]["first"], r["episodes"]["baseline:etx"]
    assert len(mine["delivered"]) == 500
    for key in ("env", "episode", "source", "destination"):
        np.testing.assert_array_equal(mine[key], etx[key])
    # One call per step, for all 50 environments at once, in the env's own layout.
    probe = meshrl.MeshRoutingVecEnv(1, config=scenario)
    obs_dim, k = probe.single_observation_space.shape[0], probe.single_action_space.n
    probe.close()
    assert set(calls) == {((50, obs_dim), np.dtype(np.float32), (50, int(k)), np.dtype(np.int8))}
    assert len(calls) < 500
    (pair,) = r["paired"]
    assert pair["a"] == "first" and pair["b"] == "baseline:etx"
    diff = mine["delivered"].astype(float).mean() - etx["delivered"].astype(float).mean()
    assert pair["delivery_diff"] == pytest.approx(diff)
    assert diff < 0  # the first valid slot is no router
    # A plain function is named after itself, and the result is deterministic.
    again = meshrl.eval.compare([first_valid], scenario, episodes=500, seed=2, num_envs=50)
    np.testing.assert_array_equal(again["episodes"]["first_valid"]["delivered"], mine["delivered"])


def test_an_sb3_model_is_evaluated_against_etx_as_it_comes(small_config):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(meshrl.ENV_ID, n_envs=2, seed=0, env_kwargs=dict(config=small_config))
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(256)
    env.close()
    act = lambda obs, mask: model.predict(obs, deterministic=True)[0]  # noqa: E731
    r = meshrl.eval.compare([("sb3", act), "baseline:etx"], small_config, episodes=200, num_envs=20)
    assert len(r["episodes"]["sb3"]["delivered"]) == 200
    assert 0.0 <= r["summary"]["sb3"]["delivery_ratio"] <= 1.0
    assert r["paired"][0]["pairs"] == 200


def test_python_policy_errors_are_clear():
    scenario = CONFIGS / "eval" / "static.toml"

    def boom(obs, mask):
        raise RuntimeError("model not loaded")

    with pytest.raises(RuntimeError, match="model not loaded"):
        meshrl.eval.compare([boom], scenario, episodes=50, num_envs=10)
    with pytest.raises(ValueError, match=r"policy `short` returned 3 actions for 10 environments"):
        meshrl.eval.compare([("short", lambda o, m: np.zeros(3, np.int64))], scenario, episodes=50, num_envs=10)
    with pytest.raises(TypeError, match="integer slots"):
        meshrl.eval.compare([("floats", lambda o, m: np.full(len(o), np.nan))], scenario, episodes=50, num_envs=10)
    with pytest.raises(ValueError, match="99"):
        meshrl.eval.compare([("far", lambda o, m: np.full(len(o), 99))], scenario, episodes=50, num_envs=10)
    with pytest.raises(TypeError, match="not callable"):
        meshrl.eval.compare([("x", 3)], scenario, episodes=50)
    with pytest.raises(TypeError, match="a policy is"):
        meshrl.eval.compare([3.5], scenario, episodes=50)
    with pytest.raises(ValueError, match="unique"):
        meshrl.eval.compare([first_valid, first_valid], scenario, episodes=50)
    # A masked slot is a lost packet, not an error.
    hidden = lambda o, m: (m == 0).argmax(axis=1)  # noqa: E731
    r = meshrl.eval.compare([("hidden", hidden)], scenario, episodes=50, num_envs=10)
    assert r["summary"]["hidden"]["delivery_ratio"] < 0.5
