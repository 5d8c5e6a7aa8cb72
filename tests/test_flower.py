"""meshrl.flower: the robust strategy on hand-made Flower messages, the ClientApp's replies, and
a real Flower deployment on loopback (a SuperLink, three SuperNodes, ``flwr run``)."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is an optional extra: pip install 'meshrl[flower]' (Python >= 3.11)")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from meshrl.flower import MeshrlStrategy, SiteWorker, client_app, federation_config

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "flower"
BIN = pathlib.Path(sys.executable).parent


def test_flower_is_imported_only_by_meshrl_flower_with_a_clear_error():
    code = ("import sys, meshrl, meshrl.fl, meshrl.ppo, meshrl.federated; assert 'flwr' not in sys.modules; "
            "sys.modules['flwr'] = None\n"
            "try:\n    import meshrl.flower\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'meshrl[flower]'" in out.stdout


# ------------------------------------------------------------------------------------------
# aggregate_train on hand-made messages


class Nodes:
    """The one thing FedAvg's node sampling asks of a Grid."""

    def __init__(self, ids):
        self.ids = list(ids)

    def get_node_ids(self):
        return self.ids


@pytest.fixture
def in_a_run(monkeypatch):
    """The task identity Flower's runtime sets in a ServerApp process (messages need it)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def train_round(strategy, global_weights, nodes):
    """configure_train for ``nodes``: the training instructions by destination node id."""
    arrays = ArrayRecord({"weights": Array(np.asarray(global_weights, dtype=np.float32))})
    messages = strategy.configure_train(1, arrays, ConfigRecord(), Nodes(nodes))
    return {m.metadata.dst_node_id: m for m in messages}


def reply(instruction, delta, examples=10, partition=None, **extra):
    metrics = MetricRecord({"num-examples": examples, "train/loss": 1.0, **extra})
    if partition is not None:
        metrics["partition-id"] = partition
    content = RecordDict({"arrays": ArrayRecord({"delta": Array(np.asarray(delta, dtype=np.float32))}), "metrics": metrics})
    return Message(content, reply_to=instruction)


def honest(n, d=8, seed=0):
    return (1.0 + 0.05 * np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def test_krum_sets_aside_the_byzantine_reply_and_rejects_nan(in_a_run):
    strategy = MeshrlStrategy("krum", {"num_byzantine": 1}, min_available_nodes=6, min_train_nodes=6)
    g = np.linspace(-1, 1, 8).astype(np.float32)
    sent = train_round(strategy, g, [11, 12, 13, 14, 15, 16])
    # Every instruction carries the global weights and the round.
    for m in sent.values():
        np.testing.assert_array_equal(m.content["arrays"]["weights"].numpy(), g)
        assert m.content["config"]["server-round"] == 1
    rows = honest(4)
    byzantine = rows[0] + 50.0
    nan = rows[1].copy()
    nan[3] = np.nan
    replies = [reply(sent[11 + i], rows[i], partition=i) for i in range(4)]
    replies += [reply(sent[15], byzantine, partition=4), reply(sent[16], nan, partition=5)]

    arrays, metrics = strategy.aggregate_train(1, replies)

    new = arrays["weights"].numpy()
    # Krum returns one honest client's update, added to the global weights.
    chosen = [i for i in range(4) if np.allclose(new, g + rows[i], atol=1e-6)]
    assert len(chosen) == 1
    report = strategy.reports[-1]
    assert report.rejected == [(16, "1 non-finite values (first at coordinate 3)")]
    assert 15 in report.set_aside and 11 + chosen[0] not in report.set_aside
    assert sorted(report.accepted) == [11, 12, 13, 14, 15]
    assert metrics["meshrl/rejected"] == 1 and metrics["meshrl/rejected-nodes"] == [16]
    assert metrics["meshrl/set-aside"] == 4 and 4 in metrics["meshrl/set-aside-partitions"]
    assert metrics["train/loss"] == pytest.approx(1.0)
    assert "partition-id" not in metrics


def test_median_resists_the_byzantine_reply_that_fedavg_follows(in_a_run):
    rows = honest(4, seed=1)
    g = np.zeros(8, np.float32)
    results = {}
    for rule in ("median", "fedavg"):
        strategy = MeshrlStrategy(rule, min_available_nodes=5, min_train_nodes=5)
        sent = train_round(strategy, g, [1, 2, 3, 4, 5])
        replies = [reply(sent[i + 1], rows[i]) for i in range(4)] + [reply(sent[5], np.full(8, -1e3))]
        arrays, _ = strategy.aggregate_train(1, replies)
        results[rule] = (arrays["weights"].numpy(), strategy.reports[-1])
    median, report = results["median"]
    assert np.all(median >= rows.min(0)) and np.all(median <= rows.max(0))
    assert report.set_aside == [5] and report.rejected == []
    assert np.all(results["fedavg"][0] < -150)


def test_fedavg_honours_example_counts_and_weights_mode(in_a_run):
    g = np.full(4, 2.0, np.float32)
    strategy = MeshrlStrategy("fedavg", min_available_nodes=2, min_train_nodes=2)
    sent = train_round(strategy, g, [7, 8])
    arrays, metrics = strategy.aggregate_train(1, [reply(sent[7], np.zeros(4), examples=1), reply(sent[8], np.ones(4), examples=3)])
    np.testing.assert_allclose(arrays["weights"].numpy(), g + 0.75)
    assert metrics["meshrl/accepted"] == 2
    # Clients that send weights: the rule still sees deltas, the result is the same.
    strategy = MeshrlStrategy("fedavg", updates="weights", min_available_nodes=2, min_train_nodes=2)
    sent = train_round(strategy, g, [7, 8])
    arrays, _ = strategy.aggregate_train(1, [reply(sent[7], g, examples=1), reply(sent[8], g + 1, examples=3)])
    np.testing.assert_allclose(arrays["weights"].numpy(), g + 0.75)


def test_bad_replies_are_rejected_one_by_one_with_reasons(in_a_run):
    strategy = MeshrlStrategy("median", min_available_nodes=5, min_train_nodes=5)
    g = np.zeros(4, np.float32)
    sent = train_round(strategy, g, [1, 2, 3, 4, 5])
    replies = [
        reply(sent[1], np.ones(4)),
        reply(sent[2], np.ones(3)),
        reply(sent[3], np.ones(4), examples=-2),
        Message(Error(code=2, reason="ClientApp raised"), reply_to=sent[4]),
        reply(sent[5], np.full(4, np.inf)),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    np.testing.assert_allclose(arrays["weights"].numpy(), np.ones(4))
    reasons = dict(strategy.reports[-1].rejected)
    assert reasons[2] == "length 3, expected 4"
    assert "num-examples" in reasons[3] and "-2" in reasons[3]
    assert reasons[4] == "error reply (code 2): ClientApp raised"
    assert reasons[5] == "4 non-finite values (first at coordinate 0)"
    assert metrics["meshrl/rejected"] == 4 and metrics["meshrl/accepted"] == 1


def test_a_round_without_enough_clients_keeps_the_global_model(in_a_run):
    strategy = MeshrlStrategy("krum", {"num_byzantine": 1}, min_available_nodes=4, min_train_nodes=4)
    sent = train_round(strategy, np.zeros(4), [1, 2, 3, 4])
    nan = np.full(4, np.nan)
    arrays, metrics = strategy.aggregate_train(1, [reply(sent[1], np.ones(4)), reply(sent[2], np.ones(4)),
                                                   reply(sent[3], np.ones(4)), reply(sent[4], nan)])
    assert arrays is None  # Flower's loop then keeps the previous global model
    assert "krum needs n > 2f + 2" in strategy.reports[-1].skipped
    assert metrics["meshrl/accepted"] == 3 and metrics["meshrl/rejected"] == 1
    arrays, _ = strategy.aggregate_train(1, [Message(Error(code=8, reason="crashed"), reply_to=sent[1])])
    assert arrays is None and strategy.reports[-1].skipped == "no acceptable replies"


def test_nnm_then_rule_and_centered_clipping_from_the_previous_aggregate(in_a_run):
    rows = honest(6, seed=2)
    strategy = MeshrlStrategy("krum", {"num_byzantine": 1, "num_selected": 3}, nnm=True, min_available_nodes=7, min_train_nodes=7)
    sent = train_round(strategy, np.zeros(8), range(1, 8))
    arrays, _ = strategy.aggregate_train(1, [reply(sent[i + 1], rows[i]) for i in range(6)] + [reply(sent[7], rows[0] + 30)])
    new = arrays["weights"].numpy()
    assert np.abs(new - rows.mean(0)).max() < 0.2
    assert 7 in strategy.reports[-1].set_aside
    # Centered clipping starts round 2 from round 1's aggregate: clients far from it move it by
    # at most tau, where starting from their own median would land among them.
    clipping = MeshrlStrategy("centered_clipping", {"tau": 0.1}, min_available_nodes=3, min_train_nodes=3)
    aggregates = []
    for rnd, shift in ((1, 0.0), (2, 10.0)):
        sent = train_round(clipping, np.zeros(8), [1, 2, 3])
        arrays, _ = clipping.aggregate_train(rnd, [reply(sent[i + 1], rows[i] + shift) for i in range(3)])
        aggregates.append(arrays["weights"].numpy())
    assert np.linalg.norm(aggregates[1] - aggregates[0]) <= 0.1 + 1e-5
    assert clipping.reports[-1].set_aside == [1, 2, 3]


def test_the_strategy_checks_its_rule_and_parameters():
    with pytest.raises(ValueError, match="unknown rule 'krumm'"):
        MeshrlStrategy("krumm")
    with pytest.raises(ValueError, match="bad rule_params for krum.*num_byzantine"):
        MeshrlStrategy("krum", {})
    with pytest.raises(ValueError, match="bad rule_params for median"):
        MeshrlStrategy("median", {"beta": 0.1})
    with pytest.raises(ValueError, match="may not set"):
        MeshrlStrategy("fedavg", {"weights": [1, 2]})
    with pytest.raises(ValueError, match="nnm=True"):
        MeshrlStrategy("median", nnm=True)
    with pytest.raises(ValueError, match="updates"):
        MeshrlStrategy("median", updates="gradients")
    with pytest.raises(RuntimeError, match="before configure_train"):
        MeshrlStrategy("median").aggregate_train(1, [])


def test_client_app_replies_with_the_workers_delta(in_a_run):
    calls = []

    class Worker:
        def fit(self, weights, server_round):
            calls.append((weights.copy(), server_round))
            return weights * 0 + 0.5, 4096, {"routing/delivery_ratio": 0.6}

        def evaluate(self, weights):
            return {"delivery_ratio": 0.7, "episodes": 64}

    app = client_app(lambda context: Worker())
    context = Context(run_id=1, node_id=5, node_config={"partition-id": 2, "num-partitions": 3}, state=RecordDict(), run_config={})
    g = np.arange(6, dtype=np.float32)
    content = RecordDict({"arrays": ArrayRecord({"weights": Array(g)}), "config": ConfigRecord({"server-round": 3})})
    out = app(Message(content, dst_node_id=5, message_type=MessageType.TRAIN), context)
    np.testing.assert_array_equal(calls[0][0], g)
    assert calls[0][1] == 3
    np.testing.assert_array_equal(out.content["arrays"]["delta"].numpy(), np.full(6, 0.5, np.float32))
    assert dict(out.content["metrics"]) == {"routing/delivery_ratio": 0.6, "num-examples": 4096, "partition-id": 2}
    out = app(Message(content, dst_node_id=5, message_type=MessageType.EVALUATE), context)
    assert dict(out.content["metrics"]) == {"delivery_ratio": 0.7, "num-examples": 64}


def test_site_workers_split_the_mesh_and_learn_from_the_global_weights():
    run = {"local-steps": 1000, "client-eval-episodes": 64, "eval-seed": 3, "env.config": "", "env.num-nodes": 16,
           "env.seed": 0, "env.hop-cost": 0.5, "ppo.num-envs": 16, "ppo.num-steps": 32, "ppo.epochs": 1,
           "ppo.minibatch-size": 256, "ppo.seed": 1}
    cfg = federation_config(run, 3)
    assert cfg["federation"]["sites"] == 3 and cfg["federation"]["local_updates"] == 2  # 1000 steps → 2 × 512
    workers = [SiteWorker(run, p, 3) for p in range(3)]
    sites = [set(w.nodes) for w in workers]
    assert all(sites) and set().union(*sites) == set(range(16)) and sum(map(len, sites)) == 16
    import meshrl.federated

    g = meshrl.federated.initial_weights(cfg)
    delta, steps, metrics = workers[1].fit(g, 1)
    assert delta.dtype == np.float32 and delta.shape == g.shape and np.isfinite(delta).all() and np.abs(delta).max() > 0
    assert steps == 1024 and 0.0 <= metrics["delivery_ratio"] <= 1.0
    # Deterministic per (seed, worker, round): the same round again gives the same delta.
    np.testing.assert_array_equal(SiteWorker(run, 1, 3).fit(g, 1)[0], delta)
    result = workers[1].evaluate(g + delta)
    assert result["episodes"] == 64 and result["delivery_ci_low"] <= result["delivery_ratio"] <= result["delivery_ci_high"]
    with pytest.raises(ValueError, match="partition-id 3 out of range"):
        SiteWorker(run, 3, 3)


# ------------------------------------------------------------------------------------------
# A real deployment on loopback

TIME_LIMIT_S = 240.0
SUPERNODES = 3


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for_port(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def processes_marked(marker):
    """Pids of live processes whose environment holds ``marker``: everything this test
    started, including what Flower detached from its parents (SuperExec, ServerApp, ClientApps)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_all(started, marker):
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in started:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Flower's own children outlive a stopped parent for a moment; end those we started.
    for _ in range(20):
        left = processes_marked(marker)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    assert not processes_marked(marker), "processes of the Flower deployment survived"


def test_loopback_deployment_improves_delivery_with_a_robust_rule(tmp_path):
    start = time.monotonic()
    deadline = start + TIME_LIMIT_S
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "flwr-home"
    home.mkdir()
    link_port, *node_ports = free_ports(1 + SUPERNODES)
    # Flower 1.41 reads SuperLink connections from $FLWR_HOME/config.toml.
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    marker = f"MESHRL_FLOWER_TEST={uuid.uuid4().hex}"
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # SuperExec starts flwr-serverapp/-clientapp by name
        PYTHONUNBUFFERED="1",
    )
    env[marker.split("=")[0]] = marker.split("=")[1]
    results = tmp_path / "results.json"
    logs, started = {}, []

    def launch(name, *args):
        logs[name] = open(tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env, stdout=logs[name],
                                stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    run = None
    try:
        link = launch("superlink", "flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
                      "--port", str(link_port))
        wait_for_port(link_port, link, deadline)
        for i, port in enumerate(node_ports):
            launch(f"supernode-{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                   "--port", str(port), "--node-config", f"partition-id={i} num-partitions={SUPERNODES}")
        overrides = (f'results-path="{results}" num-server-rounds=3 strategy.rule="median" '
                     f"strategy.min-nodes={SUPERNODES} local-steps=81920 server-eval-episodes=1024 client-eval-episodes=0")
        run = subprocess.run([str(BIN / "flwr"), "run", str(app), "loopback", "--stream", "--run-config", overrides],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=max(1.0, deadline - time.monotonic()))
        # `--stream` returns once the run has finished and its logs are all retrieved; the
        # ServerApp writes the summary before it finishes. A short grace for the file system.
        grace = min(deadline, time.monotonic() + 10)
        while not results.exists() and time.monotonic() < grace:
            time.sleep(0.5)
        assert results.exists(), f"the ServerApp wrote no results (flwr run exited {run.returncode})"
        summary = json.loads(results.read_text())
        assert run.returncode == 0, run.stderr[-3000:]
        check_summary(summary, time.monotonic() - start)
    except BaseException:
        for f in logs.values():
            f.flush()
        print(f"--- flwr run\n{run.stdout if run else ''}\n{run.stderr if run else ''}")
        for name in logs:
            print(f"--- {name}\n{(tmp_path / f'{name}.log').read_text()[-6000:]}")
        raise
    finally:
        stop_all(started, marker)
        for f in logs.values():
            f.close()


def check_summary(summary, wall):
    """What the ServerApp wrote after the loopback run."""
    assert summary["strategy"] == "MeshrlStrategy" and summary["rule"] == "median"
    assert summary["rounds"] >= 3
    reports = summary["reports"]
    assert [r["server_round"] for r in reports] == [1, 2, 3]
    # Every round aggregated all three workers' deltas (no rejections, no skipped round).
    assert all(len(r["accepted"]) == SUPERNODES and not r["rejected"] and r["skipped"] is None for r in reports)
    assert all(sorted(r["partitions"].values()) == list(range(SUPERNODES)) for r in reports)
    assert all(summary["train_metrics"][str(k)]["meshrl/accepted"] == SUPERNODES for k in (1, 2, 3))
    evals = summary["server_eval"]
    assert set(evals) == {"0", "1", "2", "3"}
    initial, final = evals["0"], evals["3"]
    assert initial["episodes"] == final["episodes"] == 1024
    print(f"loopback: {summary['rounds']} rounds, delivery {initial['delivery_ratio']:.3f} -> {final['delivery_ratio']:.3f} "
          f"(ETX {final['etx_delivery_ratio']:.3f}), per round {[round(evals[str(k)]['delivery_ratio'], 3) for k in range(4)]}, "
          f"strategy {summary['wall_s']:.1f} s, test {wall:.1f} s")
    # Same packets (same traffic seed), so ETX routes them identically both times.
    assert initial["etx_delivery_ratio"] == final["etx_delivery_ratio"]
    assert final["delivery_ratio"] > initial["delivery_ratio"]
    # Beyond noise: the final model's 95 % interval lies above the initial model's estimate.
    assert final["delivery_ci_low"] > initial["delivery_ratio"]
    assert summary["client_eval"] == {}  # client-eval-episodes=0: no federated evaluation (time)
