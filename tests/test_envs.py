"""The Gymnasium environments: spaces, checker, vector/single agreement, autoreset, copy, errors."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import meshrl
from meshrl.envs import LOSS_CAUSES, OUTCOMES

from conftest import CONFIGS, TOPOLOGIES


def random_valid(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random valid slot per row of an int8 mask (0 where a row has none)."""
    noise = rng.random(mask.shape) * (mask > 0)
    return noise.argmax(axis=-1).astype(np.int64)


def test_registered_and_spaces(small_config):
    assert meshrl.ENV_ID in gymnasium.registry
    env = gymnasium.make(meshrl.ENV_ID, config=small_config)
    assert env.observation_space.shape == (49,) and env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Discrete(8)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].shape == (8,)
    assert info["action_mask"].sum() >= 1


def test_check_env_passes_without_warnings(dynamic_config):
    env = gymnasium.make(meshrl.ENV_ID, config=dynamic_config).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


def test_kwargs_map_to_config_fields():
    env = gymnasium.make(meshrl.ENV_ID, num_nodes=24, untrusted_fraction=0.25, topology={"max_neighbors": 6})
    cfg = env.unwrapped.config
    assert cfg["topology"]["num_nodes"] == 24 and cfg["topology"]["max_neighbors"] == 6
    assert cfg["trust"]["untrusted_fraction"] == 0.25
    assert env.observation_space.shape == (6 * 6 + 1,)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"num_nodes": 2}, "topology.num_nodes"),
        ({"untrusted_fraction": 1.5}, "trust.untrusted_fraction"),
        ({"num_nodez": 10}, "num_nodez"),
        ({"ttl": 0}, "env.ttl"),
        ({"radio": {"tx_powr_dbm": 3}}, "tx_powr_dbm"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        gymnasium.make(meshrl.ENV_ID, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"num_nodes": float("nan")}, TypeError, r"`topology\.num_nodes` must be an int, got float nan"),
        ({"num_nodes": "x"}, TypeError, r"`topology\.num_nodes` must be an int, got str 'x'"),
        ({"num_nodes": 24.0}, TypeError, r"topology\.num_nodes"),
        ({"num_nodes": True}, TypeError, r"topology\.num_nodes"),
        ({"num_nodes": -1}, ValueError, r"invalid config field `topology\.num_nodes`"),
        ({"num_nodes": 2**70}, ValueError, r"invalid config field `topology\.num_nodes`"),
        ({"ttl": 2**40}, ValueError, r"invalid config field `env\.ttl`"),
        ({"seed": -5}, ValueError, r"invalid config field `seed`"),
        ({"untrusted_fraction": float("nan")}, ValueError, r"`trust\.untrusted_fraction` must be a finite number"),
        ({"area_m": float("inf")}, ValueError, r"topology\.area_m"),
        ({"untrusted_fraction": "0.1"}, TypeError, r"trust\.untrusted_fraction"),
        ({"churn": 1}, TypeError, r"`dynamics\.churn` must be a bool"),
        ({"topology": {"kind": 3}}, TypeError, r"topology\.kind"),
        ({"topology": {"num_nodes": float("nan")}}, TypeError, r"topology\.num_nodes"),
        ({"reward": {"hop_cost": float("-inf")}}, ValueError, r"reward\.hop_cost"),
        ({"topology": 5}, ValueError, r"section `topology`"),
    ],
)
def test_mistyped_or_non_finite_kwargs_name_the_field(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        gymnasium.make(meshrl.ENV_ID, **kwargs)
    with pytest.raises(error, match=needle):
        gymnasium.make_vec(meshrl.ENV_ID, num_envs=2, **kwargs)


def test_mistyped_dict_config_names_the_field():
    with pytest.raises(TypeError, match=r"topology\.num_nodes"):
        meshrl.MeshRoutingEnv(config={"topology": {"num_nodes": "many"}})
    with pytest.raises(ValueError, match=r"invalid config field `radio\.mac_retries`"):
        meshrl.resolve_config({"radio": {"mac_retries": -2}})
    with pytest.raises(ValueError, match=r"trust\.drop_probability"):
        meshrl.resolve_config({"trust": {"drop_probability": float("nan")}})


def test_numpy_scalars_are_accepted_as_config_values():
    cfg = meshrl.resolve_config(num_nodes=np.int64(24), untrusted_fraction=np.float32(0.25), churn=np.bool_(True))
    assert cfg["topology"]["num_nodes"] == 24 and cfg["dynamics"]["churn"] is True
    assert cfg["trust"]["untrusted_fraction"] == 0.25
    assert meshrl.resolve_config(area_m=300)["topology"]["area_m"] == 300.0


def test_infos_name_the_packet_not_the_episode(small_config):
    # "episode" belongs to episode-statistics wrappers (Gymnasium's, SB3's Monitor).
    env = meshrl.MeshRoutingEnv(config=small_config)
    _, info = env.reset(seed=0)
    assert "episode" not in info and info["packet"] == 0
    venv = meshrl.MeshRoutingVecEnv(num_envs=4, config=small_config, autoreset_mode="same_step")
    _, infos = venv.reset(seed=0)
    assert "episode" not in infos and "_episode" not in infos
    np.testing.assert_array_equal(infos["packet"], 0)
    assert infos["_packet"].all()
    assert "episode" not in infos["final_info"] and "packet" in infos["final_info"]


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        meshrl.MeshRoutingEnv(config=str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[topology]\nnum_nodes = 'many'\n")
    with pytest.raises(ValueError, match="bad.toml"):
        meshrl.MeshRoutingEnv(config=str(bad))
    topo = tmp_path / "topo.json"
    topo.write_text('{"nodes": [{"id": 1}, {"id": 1}], "links": []}')
    with pytest.raises(meshrl.TopologyError, match="appears twice"):
        meshrl.MeshRoutingEnv(topology={"kind": "file", "path": str(topo)})
    assert issubclass(meshrl.TopologyError, meshrl.MeshrlError)


def test_bad_actions_raise(small_config):
    env = meshrl.MeshRoutingEnv(config=small_config)
    with pytest.raises(meshrl.EnvStateError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for action in (8, -1):
        with pytest.raises(ValueError, match="out of range"):
            env.step(action)
    with pytest.raises(ValueError, match="integer"):
        env.step(1.5)
    venv = meshrl.MeshRoutingVecEnv(num_envs=4, config=small_config)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        venv.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        venv.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="out of range"):
        venv.step(np.array([0, 0, 0, 99]))
    venv.close()
    with pytest.raises(meshrl.EnvStateError, match="closed"):
        venv.step(np.zeros(4, dtype=np.int64))


def test_invalid_action_error_mode(small_config):
    env = meshrl.MeshRoutingVecEnv(num_envs=2, config=small_config, max_neighbors=16, invalid_action="error")
    _, info = env.reset(seed=0)
    masked = np.array([np.flatnonzero(row == 0)[-1] for row in info["action_mask"]])
    with pytest.raises(ValueError, match="masked"):
        env.step(masked)


def test_masked_action_loses_the_packet_by_default(small_config):
    env = meshrl.MeshRoutingEnv(config=small_config, max_neighbors=16)
    _, info = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"] == 0)[-1]))
    assert (reward, terminated, truncated) == (-5.0, True, False)
    assert info["outcome_name"] == "lost" and info["loss_cause_name"] == "invalid_action"


def test_vector_env_agrees_with_sync_vector_env_of_single_envs(dynamic_config):
    n = 5
    kwargs = dict(config=dynamic_config, env={"envs_per_twin": 1})
    native = gymnasium.make_vec(meshrl.ENV_ID, num_envs=n, **kwargs)
    assert isinstance(native, meshrl.MeshRoutingVecEnv)
    sync = gymnasium.make_vec(meshrl.ENV_ID, num_envs=n, vectorization_mode="sync", **kwargs)
    o1, i1 = native.reset(seed=42)
    o2, i2 = sync.reset(seed=42)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(300):
        actions = random_valid(i1["action_mask"], rng)
        o1, r1, t1, tr1, i1 = native.step(actions)
        o2, r2, t2, tr2, i2 = sync.step(actions)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(i1["action_mask"], i2["action_mask"])
        for key in ("outcome", "node", "path_length", "latency_ms"):
            np.testing.assert_array_equal(i1[key], i2[key])
        episodes += int(t1.sum() + tr1.sum())
    assert episodes > 50


def test_next_step_autoreset_follows_gymnasium(small_config):
    env = meshrl.MeshRoutingVecEnv(num_envs=32, config=small_config)
    assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    done_before = np.zeros(32, dtype=bool)
    checked = 0
    for _ in range(60):
        _, reward, term, trunc, info = env.step(random_valid(info["action_mask"], rng))
        # The step after an episode ends is a reset step: reward 0, not done, fresh packet.
        assert np.all(reward[done_before] == 0) and not np.any(term[done_before] | trunc[done_before])
        assert np.all(info["path_length"][done_before] == 0)
        assert np.all(info["node"][done_before] == info["source"][done_before])
        checked += done_before.sum()
        done_before = term | trunc
    assert checked > 50


def test_same_step_autoreset_puts_final_obs_in_info(small_config):
    kwargs = dict(config=small_config, env={"envs_per_twin": 1})
    nxt = meshrl.MeshRoutingVecEnv(num_envs=16, **kwargs)
    same = meshrl.MeshRoutingVecEnv(num_envs=16, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    assert same.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    o1, i1 = nxt.reset(seed=3)
    o2, i2 = same.reset(seed=3)
    assert "final_obs" in i2 and not i2["_final_obs"].any()
    rng = np.random.default_rng(2)
    first_done = np.zeros(16, dtype=bool)
    for _ in range(40):
        a = random_valid(i2["action_mask"], rng)
        o1, r1, t1, tr1, i1 = nxt.step(a)
        o2, r2, t2, tr2, i2 = same.step(a)
        live = ~first_done
        np.testing.assert_array_equal(r1[live], r2[live])
        np.testing.assert_array_equal(t1[live], t2[live])
        ended = live & (t1 | tr1)
        np.testing.assert_array_equal(i2["_final_obs"][live], ended[live])
        # The final observation under SAME_STEP is what NEXT_STEP returns as obs.
        np.testing.assert_array_equal(i2["final_obs"][ended], o1[ended])
        np.testing.assert_array_equal(i2["final_info"]["outcome"][ended], i1["outcome"][ended])
        # ...and the returned obs is already the next episode's first.
        assert np.all(i2["path_length"][ended] == 0)
        still = live & ~ended
        np.testing.assert_array_equal(o2[still], o1[still])
        first_done |= ended
    assert first_done.sum() >= 10


def test_copy_false_is_zero_copy_and_copy_true_owns(small_config):
    view = meshrl.MeshRoutingVecEnv(num_envs=8, config=small_config, copy=False)
    obs, _ = view.reset(seed=0)
    address = obs.__array_interface__["data"][0]
    before = obs.copy()
    obs2, *_ = view.step(np.zeros(8, dtype=np.int64))
    assert obs2.__array_interface__["data"][0] == address
    assert obs2 is obs or np.shares_memory(obs, obs2)
    assert not np.array_equal(obs, before), "the view did not see the step"
    assert not obs.flags.writeable

    owned = meshrl.MeshRoutingVecEnv(num_envs=8, config=small_config, copy=True)
    obs, _ = owned.reset(seed=0)
    snapshot = obs.copy()
    owned.step(np.zeros(8, dtype=np.int64))
    np.testing.assert_array_equal(obs, snapshot)


def test_seeding_is_deterministic_and_accepts_lists(dynamic_config):
    def run(seed):
        env = meshrl.MeshRoutingVecEnv(num_envs=16, config=dynamic_config)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        total = 0.0
        for _ in range(50):
            obs, r, *_, info = env.step(random_valid(info["action_mask"], rng))
            total += float(r.sum())
        return obs, total

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[1] != c[1]
    env = meshrl.MeshRoutingVecEnv(num_envs=3, config=dynamic_config, env={"envs_per_twin": 1})
    o_list, _ = env.reset(seed=[5, 6, 7])
    o_int, _ = env.reset(seed=5)
    np.testing.assert_array_equal(o_list, o_int)
    with pytest.raises(ValueError, match="3 seeds"):
        env.reset(seed=[1, 2])


def test_infos_have_masks_and_names(dynamic_config):
    env = meshrl.MeshRoutingVecEnv(num_envs=64, config=dynamic_config)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(100):
        _, _, term, trunc, info = env.step(random_valid(info["action_mask"], rng))
        for key in ("outcome", "loss_cause", "latency_ms", "path_length", "action_mask"):
            assert info[f"_{key}"].all() and len(info[key]) == 64
        seen.update(LOSS_CAUSES[c] for c in info["loss_cause"][term])
        delivered = info["outcome"] == OUTCOMES.index("delivered")
        assert np.all(info["latency_ms"][delivered] > 0)
    assert {"link_loss", "untrusted_drop"} <= seen


def test_freifunk_topology_as_gymnasium_env():
    path = TOPOLOGIES / "freifunk-bielefeld.json"
    assert path.exists(), f"missing {path} (set MESHRL_TOPOLOGIES)"
    env = gymnasium.make_vec(meshrl.ENV_ID, num_envs=32, topology={"kind": "file", "path": str(path)}, ttl=64)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 49) and np.isfinite(obs).all()


def test_routing_features_have_their_own_space():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("meshrl/MeshRouting-v0", config=CONFIGS / "env" / "small.toml", features="routing")
    assert env.observation_space.shape == (8 * 11 + 3,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    check_env(env.unwrapped)
    envs = gymnasium.make_vec("meshrl/MeshRouting-v0", num_envs=4, config=CONFIGS / "env" / "small.toml", features="routing")
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (4, 8 * 11 + 3) and envs.single_observation_space.contains(obs[0])
