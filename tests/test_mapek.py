"""meshrl.mapek: incident files, the loop's proof, clear errors."""

import pytest

import meshrl.mapek

from conftest import CONFIGS

INCIDENTS = CONFIGS / "eval" / "incidents"


def test_every_incident_file_loads():
    kinds = set()
    for path in sorted(INCIDENTS.glob("*.toml")):
        f = meshrl.mapek.load_incident(path)
        (kind,) = f["incident"]
        kinds.add(kind)
        assert f["run"]["router"] == "etx"
        assert f["scenario"]["topology"]["num_nodes"] == 32
    assert kinds == set(meshrl.mapek.INCIDENT_KINDS)


def test_malicious_node_is_quarantined_and_delivery_recovers():
    r = meshrl.mapek.evaluate(INCIDENTS / "node_turns_malicious.toml")
    assert r["detectors"]["training"]["clients"] > 100  # one client per node of each mesh
    (inc,) = r["incidents"]
    assert inc["kind"] == "node_turns_malicious" and inc["start_tick"] == 300
    loops = {l["detector"]: l for l in inc["with_loop"]}
    assert set(loops) == {"federated", "local", "threshold"}
    fed = loops["federated"]
    assert fed["detected"] == fed["twins"] == 8
    assert fed["time_to_detect_max"] <= 100
    assert fed["recovered_after"] >= 0.5  # the target
    assert fed["healthy_quarantined_fraction"] <= 0.01
    assert fed["paired_after_ci"][0] > 0
    twin, first = fed["actions"][0]
    assert first["action"] == "quarantine" and "overheard" in first["reason"]
    assert "| node_turns_malicious |" in r["tables"]


def test_bad_incident_files_raise_value_errors_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'scenario = "{(CONFIGS / "eval" / "static.toml").as_posix()}"\n'
        '[incident]\nkind = "node_turns_malicious"\nstart_tick = 300\ndrop_probability = 1.5\n'
    )
    with pytest.raises(ValueError, match=r"incident\.drop_probability"):
        meshrl.mapek.load_incident(bad)
    bad.write_text(
        f'scenario = "{(CONFIGS / "eval" / "static.toml").as_posix()}"\n[incident]\nkind = "meteor"\n'
    )
    with pytest.raises(ValueError, match="meteor"):
        meshrl.mapek.evaluate([bad])
    with pytest.raises(FileNotFoundError):
        meshrl.mapek.load_incident(tmp_path / "missing.toml")


def test_detector_rounds_are_proven_in_a_ledger_the_loop_serves_from(tmp_path):
    import meshrl.ledger

    f = tmp_path / "small.toml"
    f.write_text(
        f'scenario = "{(CONFIGS / "eval" / "static.toml").as_posix()}"\n'
        '[incident]\nkind = "node_turns_malicious"\nstart_tick = 100\ndrop_probability = 0.6\n'
        "[run]\nticks = 300\ntwins = 1\n"
        '[detector]\ntraining_meshes = 2\nticks = 300\nrounds = 5\nledger = "detector.mlg"\n'
    )
    r = meshrl.mapek.evaluate(f)
    led = r["detectors"]["ledger"]
    path = tmp_path / "detector.mlg"  # taken from the incident file's folder
    assert led["path"] == str(path) and led["validators"] == 4
    assert led["blocks"] == 1 + 2 * 6  # genesis, then update + proof per round and calibration
    report = meshrl.ledger.Ledger(path).verify()
    assert report.consensus_proofs == 6 and report.latest_proven.round == 6
    assert report.latest_proven.model_hash == led["served"]
    fed = [m for m in r["detectors"]["history"] if m["detector"] == "federated"]
    proven = {b.round: b.body["model_hash"] for b in meshrl.ledger.Ledger(path).blocks() if b.kind == "MODEL_UPDATE"}
    assert [m["model_hash"] for m in fed] == [proven[i] for i in range(1, 6)]
    assert all("model_hash" not in m for m in r["detectors"]["history"] if m["detector"] == "local")
    # Again on the same ledger: continued, nothing appended, the same model served.
    again = meshrl.mapek.evaluate(f, ledger=path)
    assert again["detectors"]["ledger"] == led
    # Another training (seed) on it: a clear error naming the setting.
    f.write_text(f.read_text() + "seed = 8\n")
    with pytest.raises(ValueError, match=r"another run.*detector\.ledger"):
        meshrl.mapek.evaluate(f)
