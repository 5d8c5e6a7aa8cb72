"""meshrl.ppo.Trainer from Python: trains, calls back, stops, round-trips weights, errors."""

import subprocess
import sys

import numpy as np
import pytest

import meshrl
import meshrl.ppo

from conftest import CONFIGS

TINY = {"num_envs": 16, "num_steps": 32, "epochs": 2, "minibatch_size": 128}


def test_train_with_callback_and_evaluate():
    trainer = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY, envs_per_twin=4)
    seen = []
    last = trainer.train(16 * 32 * 3, callback=lambda s: seen.append(s))
    assert [s["global_step"] for s in seen] == [512, 1024, 1536]
    assert trainer.global_step == 1536
    assert {"charts/SPS", "losses/approx_kl", "losses/clipfrac", "routing/delivery_ratio"} <= set(last)
    assert np.isfinite(last["losses/policy_loss"])
    result = trainer.evaluate(episodes=64)
    policies = result["policies"]
    assert {"ppo", "ppo (greedy)", "baseline:etx", "baseline:latency", "baseline:shortest_path"} <= set(policies)
    assert result["best_baseline"] in policies
    lo, hi = policies["ppo"]["delivery_ci"]
    assert lo <= policies["ppo"]["delivery_ratio"] <= hi
    assert all(p["episodes"] == 64 for p in policies.values())
    assert [(p["a"], p["b"]) for p in result["paired"][:2]] == [("ppo", "baseline:etx"), ("ppo (greedy)", "baseline:etx")]


def test_callback_false_stops_and_exceptions_propagate():
    trainer = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    trainer.train(10_000, callback=lambda s: False)
    assert trainer.global_step == 512

    def boom(stats):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        trainer.train(10_000, callback=boom)


def test_callback_can_use_the_trainer_but_not_train_it_again():
    trainer = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    snaps = []

    def snapshot(stats):
        # Between updates the trainer is free: weights, step count and acting all work.
        assert trainer.global_step == stats["global_step"]
        snaps.append(trainer.get_weights())
        trainer.get_action(np.zeros((1, 49), np.float32), np.ones((1, 8), np.int8))

    trainer.train(512 * 3, callback=snapshot)
    assert len(snaps) == 3 and not np.array_equal(snaps[0], snaps[2])
    np.testing.assert_array_equal(snaps[-1], trainer.get_weights())
    # The same run without a callback ends at the same weights: the callback changed nothing.
    plain = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    plain.train(512 * 3)
    np.testing.assert_array_equal(plain.get_weights(), snaps[-1])
    with pytest.raises(RuntimeError, match="already running"):
        trainer.train(512, callback=lambda s: trainer.train(512))
    trainer.train(512)  # and the trainer is usable again afterwards
    assert trainer.global_step == 512 * 5


def test_training_config_and_weights_round_trip(tmp_path):
    trainer = meshrl.ppo.Trainer(config=CONFIGS / "train" / "small.toml", ppo=TINY)
    assert trainer.total_steps == 600_000 and trainer.env_config["reward"]["hop_cost"] == 0.5
    trainer.train(512)
    w = trainer.get_weights()
    assert w.dtype == np.float32 and w.ndim == 1
    other = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    other.set_weights(w)
    np.testing.assert_array_equal(other.get_weights(), w)
    obs = np.full((5, 49), 0.2, dtype=np.float32)
    mask = np.zeros((5, 8), dtype=np.int8)
    mask[:, [1, 4]] = 1
    a = trainer.get_action(obs, mask, seed=3)
    assert set(a.tolist()) <= {1, 4}
    np.testing.assert_array_equal(a, other.get_action(obs, mask, seed=3))
    path = tmp_path / "policy.weights"
    trainer.save(path)
    third = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    third.load(path)
    np.testing.assert_array_equal(third.get_weights(), w)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(meshrl.CorruptFileError, match="checksum"):
        third.load(path)
    with pytest.raises(FileNotFoundError):
        third.load(tmp_path / "missing.weights")


def test_errors_are_clear():
    with pytest.raises(ValueError, match="ppo.minibatch_size"):
        meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", {"num_envs": 2, "num_steps": 2, "minibatch_size": 64})
    with pytest.raises(ValueError, match="unknown PPO setting"):
        meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", {"learning_rat": 1e-3})
    with pytest.raises(ValueError, match="topology.num_nodes"):
        meshrl.ppo.Trainer(num_nodes=1)
    t = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    with pytest.raises(ValueError, match="expected"):
        t.set_weights(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        t.set_weights(np.full(t.get_weights().shape, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="steps"):
        t.train()
    with pytest.raises(ValueError, match="n × 49"):
        t.get_action(np.zeros((2, 10), dtype=np.float32), np.ones((2, 8), dtype=np.int8))
    obs = np.zeros((2, 49), dtype=np.float32)
    obs[1, 3] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        t.get_action(obs, np.ones((2, 8), dtype=np.int8))
    with pytest.raises(ValueError, match="no valid action"):
        t.get_action(np.zeros((2, 49), dtype=np.float32), np.zeros((2, 8), dtype=np.int8))
    with pytest.raises(ValueError, match="0 or 1"):
        t.get_action(np.zeros((1, 49), dtype=np.float32), np.full((1, 8), 2, dtype=np.int8))
    with pytest.raises(ValueError, match="ppo.hidden"):
        meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", dict(TINY, hidden=[10**6, 10**6]))


def test_learner_and_trainer_share_one_learner():
    t = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", TINY)
    assert t.learner.spec["obs_dim"] == 49 and t.learner.spec["num_actions"] == 8
    w = t.learner.get_weights()
    t.train(512)
    assert not np.array_equal(t.learner.get_weights(), w)  # the learner is the trainer's
    logits = t.logits(np.zeros((3, 49), np.float32))
    assert logits.shape == (3, 8)
    # The slot architecture on the routing features.
    s = meshrl.ppo.Trainer(CONFIGS / "env" / "small.toml", dict(TINY, architecture="slots"), features="routing")
    assert s.learner.spec["architecture"] == "slots" and s.learner.spec["obs_dim"] == 8 * 11 + 3
    s.train(512)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_auto_device_leaves_no_busy_gpu_threads_on_a_machine_without_a_gpu():
    # device="auto" (the default) asks wgpu whether the machine has a GPU before it makes a burn
    # wgpu device. It used to probe by making two, whose device-server threads ("DS…") stayed for
    # the life of the process and woke every 150 µs: an idle Jupyter kernel burned ~20 % of a core.
    code = f"""
import os, time, meshrl.ppo
t = meshrl.ppo.Trainer(CONFIGS, {TINY!r})
names = [open(f"/proc/self/task/{{tid}}/comm").read().strip() for tid in os.listdir("/proc/self/task")]
cpu = time.process_time()
time.sleep(1.0)
print(t.device, t.learner.device, time.process_time() - cpu, ",".join(names))
""".replace("CONFIGS", repr(str(CONFIGS / "env" / "small.toml")))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    device, learner_device, idle_cpu_s, names = p.stdout.split()
    assert device == learner_device and device in ("flex", "wgpu", "cuda"), p.stdout
    if device != "flex":
        pytest.skip(f"this machine has a GPU: auto chose {device}")
    assert not [n for n in names.split(",") if n.startswith("DS")], names
    assert float(idle_cpu_s) < 0.05, f"{idle_cpu_s} s of CPU in one idle second"
