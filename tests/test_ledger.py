"""meshrl.ledger: reading, verifying, tampering, loading only proven models, identities."""

import os
import stat

import numpy as np
import pytest

import meshrl
from meshrl import ledger as ml


@pytest.fixture
def demo(tmp_path):
    return ml.Ledger.write_demo(tmp_path / "ledger.bin", rounds=3, validators=4, seed=7)


def test_demo_ledger_verifies_and_lists_blocks(demo):
    report = demo.verify()
    assert (report.blocks, report.model_updates, report.consensus_proofs) == (7, 3, 3)
    assert report.f == 1 and report.anchored and report.torn_tail is None
    assert report.missing_weights == []
    blocks = demo.blocks()
    assert [b.kind for b in blocks] == ["GENESIS"] + ["MODEL_UPDATE", "CONSENSUS_PROOF"] * 3
    assert [b.round for b in blocks[1:]] == [1, 1, 2, 2, 3, 3]
    for prev, b in zip(blocks, blocks[1:]):
        assert b.prev == prev.hash
    proof = blocks[2].body
    assert len(proof["commits"]) >= 3
    assert blocks[1].body["epsilon"] == pytest.approx(0.25)
    assert blocks[1].author.startswith("spiffe://demo.meshrl/mesh/node/")


def test_latest_model_is_the_proven_one(demo):
    latest, weights = demo.latest_model()
    assert latest.round == 3
    assert weights.dtype == np.float32 and weights.shape == (16,)
    assert np.array_equal(demo.load_model(latest.model_hash), weights)
    assert demo.load_model_bytes(latest.model_hash)[:8]  # safetensors header length


def test_unproven_or_unknown_models_are_refused(demo):
    with pytest.raises(LookupError):
        demo.load_model("00" * 32)
    with pytest.raises(ValueError):
        demo.load_model("not hex")


def test_every_flipped_byte_region_is_detected(demo):
    good = demo.path.read_bytes()
    for pos in np.linspace(0, len(good) - 1, 40).astype(int):
        bad = bytearray(good)
        bad[pos] ^= 0x10
        demo.path.write_bytes(bytes(bad))
        with pytest.raises(meshrl.CorruptFileError):
            demo.verify()
    demo.path.write_bytes(good)
    demo.verify()


def test_truncation_and_removed_blocks_are_detected(demo):
    good = demo.path.read_bytes()
    for cut in (len(good) - 1, len(good) // 2, 16):
        demo.path.write_bytes(good[:cut])
        with pytest.raises(meshrl.CorruptFileError):
            demo.verify()
    demo.path.write_bytes(good)
    assert demo.verify().blocks == 7


def test_tampered_weights_are_refused(demo):
    latest, _ = demo.latest_model()
    w = demo.path.parent / "ledger.bin.weights" / f"{latest.model_hash}.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(meshrl.CorruptFileError):
        demo.load_model(latest.model_hash)
    with pytest.raises(meshrl.CorruptFileError):
        demo.verify()


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        ml.Ledger(tmp_path / "missing.bin")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello, not a ledger")
    with pytest.raises(meshrl.CorruptFileError):
        ml.Ledger(junk).verify()
    with pytest.raises(ValueError):
        ml.Ledger.write_demo(tmp_path / "x.bin", rounds=-1)
    with pytest.raises(TypeError):
        ml.Ledger.write_demo(tmp_path / "x.bin", rounds=2.5)
    with pytest.raises(ValueError):
        ml.Ledger.write_demo(tmp_path / "x.bin", seed=2**64)
    with pytest.raises(ValueError):
        ml.Ledger.write_demo(tmp_path / "y.bin", validators=0)
    ml.Ledger.write_demo(tmp_path / "z.bin", rounds=0)
    with pytest.raises(OSError):
        ml.Ledger.write_demo(tmp_path / "z.bin", rounds=1)
    assert ml.Ledger(tmp_path / "z.bin").latest_model() is None


def test_cli_verifies_and_shows(demo, capsys):
    assert meshrl._core.cli_main(["meshrl", "ledger", "verify", str(demo.path)]) == 0
    assert meshrl._core.cli_main(["meshrl", "ledger", "show", str(demo.path)]) == 0
    bad = bytearray(demo.path.read_bytes())
    bad[len(bad) // 3] ^= 1
    demo.path.write_bytes(bytes(bad))
    assert meshrl._core.cli_main(["meshrl", "ledger", "verify", str(demo.path)]) == 2


def test_identities_are_private_and_checked(tmp_path):
    key = tmp_path / "node.key"
    me = ml.generate_identity(key, "mesh.example", "node-7")
    assert me.spiffe_id == "spiffe://mesh.example/mesh/node/node-7"
    assert len(me.public_key) == 64
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert ml.load_identity(key) == me
    with pytest.raises(OSError):
        ml.generate_identity(key, "mesh.example", "node-7")
    other = ml.generate_identity(tmp_path / "other.key", "mesh.example", "node-7")
    assert other.public_key != me.public_key
    os.chmod(key, 0o644)
    with pytest.raises(PermissionError):
        ml.load_identity(key)
    with pytest.raises(ValueError):
        ml.generate_identity(tmp_path / "bad.key", "Not A Domain", "x")
    with pytest.raises(ValueError):
        ml.generate_identity(tmp_path / "bad2.key", "mesh.example", "../x")
