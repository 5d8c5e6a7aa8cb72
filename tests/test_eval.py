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
