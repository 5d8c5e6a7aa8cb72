"""meshrl.federated: the in-process federation and a standalone worker."""

import json

import numpy as np
import pytest

import meshrl
import meshrl.runtime
import meshrl.federated as fl
from conftest import CONFIGS

MESH20 = CONFIGS / "federate" / "mesh20.toml"
FAST = {
    "federation": {"rounds": 3, "clients_per_round": 6, "local_updates": 1, "eval_every": 0, "eval_packets": 200},
    "ppo": {"hidden": [16], "num_envs": 8, "num_steps": 16, "epochs": 1, "minibatch_size": 64},
}


def fast(**more):
    cfg = fl.load_config(MESH20, **FAST)
    for section, fields in more.items():
        cfg[section] = {**(cfg.get(section) or {}), **fields}
    return cfg


def test_rounds_report_who_took_part_and_the_same_seed_gives_the_same_model():
    a = fl.Federation(fast())
    reports = a.run(2)
    assert [r["round"] for r in reports] == [1, 2]
    for r in reports:
        assert r["completed"]
        assert 1 <= len(r["participants"]) <= 6
        assert r["samples"] == len(r["participants"]) * 128
        assert len(r["model_hash"]) == 64
    b = fl.Federation(fast())
    b.run(2)
    assert a.model_hash == b.model_hash
    assert np.array_equal(a.global_weights(), b.global_weights())
    c = fl.Federation(fast(federation={"seed": 99}))
    c.run(2)
    assert c.model_hash != a.model_hash


def test_callback_stops_and_history_and_run_defaults_to_the_configured_rounds():
    fed = fl.Federation(fast())
    seen = []
    fed.run(callback=lambda r: seen.append(r["round"]) or False)
    assert seen == [1] and fed.round == 1
    fed.run()
    assert fed.round == 3 and [r["round"] for r in fed.history] == [1, 2, 3]
    assert fed.history[-1]["global_delivery"] is not None  # evaluated at the last round


def test_nan_updates_are_excluded_and_never_reach_the_global_model():
    fed = fl.Federation(fast(faults={"nan": 0.5}))
    reports = fed.run(3)
    excluded = [why for r in reports for _, why in r["excluded"]]
    assert excluded and all("non-finite" in w for w in excluded)
    assert np.isfinite(fed.global_weights()).all()


def test_worker_fit_returns_a_delta_of_the_model_size():
    fed = fl.Federation(fast())
    w = fl.Worker(fast(), 3)
    assert w.nodes == fed.site(3) == [3]
    g = fed.global_weights()
    delta, n, metrics = w.fit(g, 1)
    assert delta.shape == g.shape and delta.dtype == np.float32
    assert n == 128 and 0.0 <= metrics["delivery_ratio"] <= 1.0
    assert np.abs(delta).sum() > 0
    again, _, _ = fl.Worker(fast(), 3).fit(g, 1)
    assert np.array_equal(delta, again)


def test_checkpoint_resume_and_export(tmp_path):
    a = fl.Federation(fast())
    a.run(1)
    a.save_checkpoint(tmp_path / "f.ckpt")
    a.run(2)
    b = fl.Federation.resume(tmp_path / "f.ckpt")
    assert b.round == 1
    b.run(2)
    assert a.model_hash == b.model_hash
    a.save_weights(tmp_path / "policy.weights")
    assert a.export(tmp_path / "policy.safetensors") > 0
    runtime = meshrl.runtime.Policy.load(tmp_path / "policy.safetensors")
    assert runtime is not None
    (tmp_path / "f.ckpt").write_bytes(b"garbage")
    with pytest.raises(meshrl.CorruptFileError):
        fl.Federation.resume(tmp_path / "f.ckpt")


def test_evaluate_compares_with_baselines_on_the_same_packets():
    fed = fl.Federation(fast())
    fed.run(1)
    out = fed.evaluate(episodes=200, baselines=["etx", "random"])
    assert list(out["policies"]) == ["federated", "baseline:etx", "baseline:random"]
    assert len(out["paired"]) == 2 and out["paired"][0]["pairs"] == 200
    d = fl.evaluate(fast(), fed.global_weights(), episodes=200)
    assert d["delivery_ratio"] == out["policies"]["federated"]["delivery_ratio"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"federation": {"clients_per_round": 500}}, "federation.clients_per_round"),
        ({"federation": {"rule": "krum2"}}, "federation.rule"),
        ({"faults": {"dropout": 2.0}}, "faults.dropout"),
        ({"attack": {"kind": "evil"}}, "attack.kind"),
        ({"federation": {"rounds": -1}}, "rounds"),
        ({"federation": {"rounds": "ten"}}, "rounds"),
    ],
)
def test_bad_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        fl.Federation(fast(**overrides))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="section"):
        fl.load_config(MESH20, bogus={"x": 1})
    with pytest.raises(ValueError, match="NaN|nan|JSON"):
        fl.Federation(MESH20, federation={"server_lr": float("nan")})
    fed = fl.Federation(fast())
    with pytest.raises(ValueError):
        fed.set_global_weights(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        fed.set_global_weights(np.full(fed.global_weights().shape, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="worker"):
        fl.Worker(fast(), 20)
    with pytest.raises(ValueError, match="worker"):
        fl.Worker(fast(), -1)
    with pytest.raises(ValueError, match="rounds"):
        fed.run(-2)
    with pytest.raises(ValueError, match="central"):
        fed.evaluate(central=True)
    with pytest.raises(FileNotFoundError):
        fl.Federation("no/such/federation.toml")


def test_cli_federate_writes_a_run_and_refuses_to_overwrite(tmp_path):
    cfg_path = tmp_path / "fed.toml"
    cfg_path.write_text(
        f'env = "{(CONFIGS / "env" / "mesh20.toml").as_posix()}"\n'
        "[overrides.env]\nfeatures = \"routing\"\n"
        "[federation]\nrounds = 2\nclients_per_round = 4\nlocal_updates = 1\neval_every = 0\neval_packets = 100\n"
        "[ppo]\narchitecture = \"slots\"\nhidden = [8]\nnum_envs = 8\nnum_steps = 8\nepochs = 1\nminibatch_size = 32\n"
    )
    out = tmp_path / "run"
    code = meshrl._core.cli_main(["meshrl", "federate", str(cfg_path), "--out", str(out), "--eval-episodes", "100"])
    assert code == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("fl/round,") and len(rows) == 3
    reports = [json.loads(l) for l in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in reports] == [1, 2]
    assert (out / "policy.weights").exists() and (out / "federation.ckpt").exists()
    assert meshrl._core.cli_main(["meshrl", "federate", str(cfg_path), "--out", str(out)]) == 2
    code = meshrl._core.cli_main(["meshrl", "federate", str(cfg_path), "--out", str(out), "--resume", "--rounds", "3", "--eval-episodes", "100"])
    assert code == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 4


def test_privacy_reports_epsilon_and_secure_aggregation_refuses_robust_rules():
    fed = fl.Federation(fast(privacy={"noise_multiplier": 1.0, "clip_norm": 0.05}))
    eps = [r["epsilon"] for r in fed.run(2)]
    assert eps[0] > 0 and eps[1] > eps[0]
    secure = fl.Federation(fast(secagg={"clip_range": 1.0}))
    plain = fl.Federation(fast())
    secure.run(1)
    plain.run(1)
    assert np.abs(secure.global_weights() - plain.global_weights()).max() < 1e-5
    with pytest.raises(ValueError, match="only the sum"):
        fl.Federation(fast(secagg={}, federation={"rule": "median"}))


def test_trust_records_every_model_in_the_ledger_with_its_proof(tmp_path):
    import meshrl.ledger

    path = tmp_path / "ledger.mlg"
    fed = fl.Federation(fast(trust={"ledger": str(path), "validators": 4}))
    reports = fed.run(2)
    assert fed.ledger_path == str(path)
    validators, byzantine = fed.validators
    assert len(validators) == 4 and not any(byzantine)
    for r in reports:
        assert r["completed"] and r["consensus_view"] == 0 and r["ledger_blocks"] == 1 + 2 * r["round"]
    ledger = meshrl.ledger.Ledger(path)
    report = ledger.verify()
    assert (report.model_updates, report.consensus_proofs) == (2, 2)
    proven, weights = ledger.latest_model()
    assert proven.model_hash == fed.model_hash
    assert np.array_equal(weights, fed.global_weights())
    # Trust changes who may decide, not what is learned.
    plain = fl.Federation(fast())
    plain.run(2)
    assert plain.model_hash == fed.model_hash


def test_trust_without_a_proof_keeps_the_model_and_bad_trust_input_is_clear(tmp_path):
    fed = fl.Federation(
        fast(
            federation={"max_retries": 0},
            trust={"ledger": str(tmp_path / "l.mlg"), "validators": 4, "byzantine_validators": 2, "pbft_budget_ms": 2000},
        )
    )
    before = fed.model_hash
    r = fed.run_round()
    assert not r["completed"] and "no consensus proof" in r["failure"]
    assert fed.model_hash == before
    with pytest.raises(ValueError, match="trust.ledger"):
        fl.Federation(fast(trust={"validators": 4})).run_round()
    with pytest.raises(ValueError, match="trust.byzantine_behavior"):
        fl.Federation(fast(trust={"ledger": str(tmp_path / "x.mlg"), "byzantine_behavior": "evil"}))
    with pytest.raises(ValueError, match="unknown field"):
        fl.Federation(fast(trust={"ledger": str(tmp_path / "x.mlg"), "validator": 4}))
