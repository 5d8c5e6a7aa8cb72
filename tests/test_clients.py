"""Real RL clients used on the environment as they come: Stable-Baselines3 (``make_vec_env`` +
PPO, with its ``Monitor``), Gymnasium's episode-statistics wrappers, and rendering."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import meshrl
from meshrl import render


def random_valid(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random valid slot per row of an int8 mask."""
    noise = rng.random(mask.shape) * (mask > 0)
    return noise.argmax(axis=-1).astype(np.int64)


def test_sb3_ppo_learns_on_make_vec_env(small_config):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    # make_vec_env passes render_mode="rgb_array" and wraps each env in SB3's Monitor, which
    # writes info["episode"] = {"r", "l", "t"}.
    env = make_vec_env(meshrl.ENV_ID, n_envs=2, seed=0, env_kwargs=dict(config=small_config, hop_cost=0.5))
    model = sb3.PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu", verbose=0)
    model.learn(2048)
    assert model.num_timesteps >= 2048
    assert len(model.ep_info_buffer) > 10
    assert all({"r", "l"} <= set(ep) and ep["l"] >= 1 for ep in model.ep_info_buffer)
    frames = env.get_images()
    assert len(frames) == 2 and all(f.shape == (*render.FRAME_SIZE, 3) and f.dtype == np.uint8 for f in frames)
    env.close()


def test_sb3_monitor_statistics_match_the_env(small_config):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(meshrl.ENV_ID, n_envs=2, seed=3, env_kwargs=dict(config=small_config))
    env.reset()
    rng = np.random.default_rng(0)
    masks = np.stack(env.env_method("action_masks"))
    finished = 0
    for _ in range(200):
        _, _, dones, infos = env.step(random_valid(masks, rng))
        for done, info in zip(dones, infos):
            if done:
                assert info["episode"]["r"] == pytest.approx(info["episode_return"], rel=1e-5, abs=1e-5)
                assert info["episode"]["l"] == info["path_length"]
                assert isinstance(info["packet"], int)
                finished += 1
        masks = np.stack(env.env_method("action_masks"))
    assert finished > 20


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_record_episode_statistics_on_the_native_vector_env(small_config, mode):
    env = gymnasium.make_vec(meshrl.ENV_ID, num_envs=8, config=small_config, autoreset_mode=mode)
    assert isinstance(env, meshrl.MeshRoutingVecEnv)
    env = gymnasium.wrappers.vector.RecordEpisodeStatistics(env)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(150):
        _, _, term, trunc, info = env.step(random_valid(info["action_mask"], rng))
        done = term | trunc
        if not done.any():
            assert "episode" not in info
            continue
        # The env's own statistics of the finished episodes: in the step's info under NEXT_STEP,
        # in final_info under SAME_STEP (the info is the next episode's by then).
        own = info["final_info"] if mode == AutoresetMode.SAME_STEP else info
        np.testing.assert_array_equal(info["_episode"], done)
        np.testing.assert_allclose(info["episode"]["r"][done], own["episode_return"][done], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(info["episode"]["l"][done], own["path_length"][done])
        finished += int(done.sum())
    assert finished > 50
    assert len(env.return_queue) == min(finished, env.return_queue.maxlen)
    # "packet" counts episodes per sub-environment, from 0.
    assert info["packet"].dtype == np.int64 and info["packet"].max() >= 3


def test_record_episode_statistics_on_the_single_env(small_config):
    env = gymnasium.wrappers.RecordEpisodeStatistics(gymnasium.make(meshrl.ENV_ID, config=small_config))
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    packets = []
    for _ in range(12):
        done = False
        while not done:
            action = int(random_valid(info["action_mask"][None], rng)[0])
            _, _, term, trunc, info = env.step(action)
            done = term or trunc
        assert info["episode"]["r"] == pytest.approx(info["episode_return"], rel=1e-5, abs=1e-5)
        assert info["episode"]["l"] == info["path_length"]
        packets.append(info["packet"])
        _, info = env.reset()
    assert packets == list(range(12))


def node_pixels(frame: np.ndarray, color) -> np.ndarray:
    return np.argwhere(np.all(frame == np.array(color, dtype=np.uint8), axis=-1))


def test_rgb_array_frames_follow_the_packet(small_config):
    env = gymnasium.make(meshrl.ENV_ID, config=small_config, render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["ansi", "rgb_array"] and env.metadata["render_fps"] > 0
    _, info = env.reset(seed=4)
    rng = np.random.default_rng(4)
    frame = env.render()
    hops_seen = 0
    for _ in range(200):
        assert frame.shape == (*render.FRAME_SIZE, 3) and frame.dtype == np.uint8
        assert len(node_pixels(frame, render.CURRENT)) > 0 and len(node_pixels(frame, render.DESTINATION)) > 0
        node = info["node"]
        _, _, term, trunc, info = env.step(int(random_valid(info["action_mask"][None], rng)[0]))
        after = env.render()
        if not (term or trunc) and info["node"] != node:
            # A hop: the packet's marker moves, along a blue path.
            moved = node_pixels(after, render.CURRENT).mean(axis=0) - node_pixels(frame, render.CURRENT).mean(axis=0)
            assert np.abs(moved).max() > 2
            assert len(node_pixels(after, render.PATH)) > 0 and not np.array_equal(frame, after)
            hops_seen += 1
        if term or trunc:
            _, info = env.reset()
            after = env.render()
        frame = after
    assert hops_seen > 10


def test_ansi_names_the_destination_and_the_neighbours(small_config):
    env = gymnasium.make(meshrl.ENV_ID, config=small_config, render_mode="ansi")
    _, info = env.reset(seed=2)
    text = env.render()
    assert isinstance(text, str)
    assert f"destination {info['destination']}" in text and f"at node {info['node']}" in text
    rows = [line for line in text.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == int(info["action_mask"].sum())
    for name in ("rssi_dBm", "latency_ms", "packet_loss", "hops_to_dest", "bandwidth_Mbps", "trust"):
        assert name in text


def test_hops_in_ansi_agree_with_the_observation(small_config):
    env = meshrl.MeshRoutingEnv(config=small_config, render_mode="ansi")
    obs, info = env.reset(seed=5)
    network = env._core.network(0)
    hops = render.hops_to(network, info["destination"])
    slots = np.flatnonzero(info["action_mask"])
    seen = obs[: env.max_neighbors * 6].reshape(env.max_neighbors, 6)[slots, 3]
    neighbours = network["neighbors"][info["node"], slots]
    expected = np.where(hops[neighbours] < 0, 1.0, np.minimum(hops[neighbours], 32) / 32)
    np.testing.assert_allclose(seen, expected, atol=1e-6)


def test_vector_env_renders_one_frame_per_sub_environment(small_config):
    env = gymnasium.make_vec(meshrl.ENV_ID, num_envs=3, config=small_config, render_mode="rgb_array")
    assert env.render_mode == "rgb_array" and "rgb_array" in env.metadata["render_modes"]
    _, info = env.reset(seed=0)
    before = env.render()
    assert isinstance(before, tuple) and len(before) == 3
    assert all(f.shape == (*render.FRAME_SIZE, 3) and f.dtype == np.uint8 for f in before)
    env.step(random_valid(info["action_mask"], np.random.default_rng(0)))
    after = env.render()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    text = meshrl.MeshRoutingVecEnv(num_envs=2, config=small_config, render_mode="ansi")
    _, info = text.reset(seed=0)
    assert [f"destination {d}" in t for t, d in zip(text.render(), info["destination"])] == [True, True]


def test_render_modes_pass_gymnasium_checks_and_bad_modes_fail(small_config):
    for mode in ("rgb_array", "ansi"):
        env = gymnasium.make(meshrl.ENV_ID, config=small_config, render_mode=mode).unwrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env)
        assert [str(w.message) for w in caught] == []
    with pytest.raises(ValueError, match="render_mode"):
        meshrl.MeshRoutingEnv(config=small_config, render_mode="human_eyes")
    with pytest.raises(ValueError, match="render_mode"):
        meshrl.MeshRoutingVecEnv(num_envs=2, config=small_config, render_mode="human_eyes")
    env = meshrl.MeshRoutingEnv(config=small_config, render_mode="rgb_array")
    with pytest.raises(meshrl.EnvStateError, match="reset"):
        env.render()
