"""The benchmark scripts run as documented (a small run of each path; the numbers are in
BENCHMARKS.md, not asserted here)."""

import shutil
import subprocess
import sys

import pytest

from conftest import CONFIGS, ROOT

TIME_TO_ETX = ROOT / "python" / "benchmarks" / "time_to_etx.py"
BENCH_SB3 = ROOT / "python" / "benchmarks" / "bench_sb3.py"


def run(*args: str, script=TIME_TO_ETX) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_bench_sb3_runs_both_halves_against_sb3():
    pytest.importorskip("stable_baselines3")
    p = run("--sps-steps", "1024", "--sb3-budget-s", "1", script=BENCH_SB3)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "SPS, prototype settings: meshrl" in p.stdout and "ratio" in p.stdout, p.stdout
    assert "shortest path 0." in p.stdout, p.stdout
    for label in ("throughput config", "prototype settings"):
        assert f"meshrl, {label}" in p.stdout and "evaluation excluded" in p.stdout, p.stdout
    assert "SB3 (prototype settings):" in p.stdout, p.stdout


def test_bench_sb3_sps_rounds_only():
    pytest.importorskip("stable_baselines3")
    p = run("--sps-steps", "1024", "--rounds", "2", "--sps-only", script=BENCH_SB3)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("SPS, prototype settings: meshrl") == 2, p.stdout
    assert "shortest path" not in p.stdout, p.stdout
    p = run("--rounds", "0", script=BENCH_SB3)
    assert p.returncode != 0 and "--rounds and --sps-steps must be at least 1" in p.stderr, p.stderr


def test_time_to_etx_races_meshrl_over_seeds_from_a_config_anywhere(tmp_path):
    # A copy of the fast config outside the repository (its env path made absolute): the race
    # accepts any config that trains the same scenario.
    text = (CONFIGS / "train" / "dynamic-routing-fast.toml").read_text()
    config = tmp_path / "fast.toml"
    config.write_text(text.replace('env = "../env/dynamic.toml"', f'env = "{CONFIGS / "env" / "dynamic.toml"}"'))
    p = run("--libs", "meshrl", "--meshrl-config", str(config), "--meshrl-steps", "4096", "--eval-every", "1024",
            "--eval-episodes", "256", "--seeds", "1,2")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| meshrl |")]
    assert len(rows) == 3, p.stdout  # one per seed, and the median row
    assert rows[0].split("|")[2].strip() == "1" and rows[1].split("|")[2].strip() == "2"
    assert "median train wall s to match ETX over seeds 1,2" in p.stdout
    # Each seed was evaluated every 1,024 steps up to the match, and at its end.
    for seed in ("1", "2"):
        block = p.stdout.split(f"meshrl, seed {seed}:")[1].split("load after")[0]
        steps = [int(line.split("step")[1].split("train")[0].replace(",", "")) for line in block.splitlines()
                 if "meshrl step" in line]
        assert steps and steps[0] == 1024 and steps[-1] == 4096 and steps == sorted(steps), block
        assert all(s % 1024 == 0 for s in steps), block


def test_time_to_etx_overrides_meshrl_settings_and_stops_at_the_match():
    p = run("--libs", "meshrl", "--meshrl-config", str(CONFIGS / "train" / "dynamic-routing-fast.toml"),
            "--meshrl", "learning_rate=0.003", "--meshrl", "epochs=4", "--meshrl", 'activation="tanh"',
            "--stop-at-match", "--eval-every", "1024", "--eval-episodes", "256")
    assert p.returncode == 0, p.stderr[-3000:]
    row = next(line for line in p.stdout.splitlines() if line.startswith("| meshrl | 1 |"))
    assert "slots [16, 16] tanh" in row and "4 epochs" in row and "lr 0.003 annealed" in row, row
    steps = [int(line.split("step")[1].split("train")[0].replace(",", "")) for line in p.stdout.splitlines()
             if "meshrl step" in line]
    # Evaluated every 1,024 steps up to its first match, and not after it.
    assert steps == list(range(1024, 1024 * len(steps) + 1, 1024)), steps
    assert int(row.split("|")[4].strip().replace(",", "")) == steps[-1], row


def test_time_to_etx_refuses_unknown_settings_and_other_scenarios(tmp_path):
    p = run("--libs", "sb3-maskable", "--sb3", "batch=256")
    assert p.returncode != 0 and "unknown setting 'batch'" in p.stderr, p.stderr
    p = run("--libs", "sb3-maskable", "--sb3", "net_arch=[32,")
    assert p.returncode != 0 and "net_arch=[32,: the value is not JSON" in p.stderr, p.stderr
    p = run("--libs", "sb3-maskable", "--sb3", 'activation="gelu"')
    assert p.returncode != 0 and '--sb3 activation="gelu": expected one of "tanh", "relu"' in p.stderr, p.stderr
    p = run("--libs", "sb3-maskable", "--sb3", 'activation=["relu"]')
    assert p.returncode != 0 and '--sb3 activation=["relu"]: expected one of' in p.stderr, p.stderr
    p = run("--libs", "meshrl", "--meshrl", "learning_rat=0.003")
    assert p.returncode != 0 and "--meshrl learning_rat=0.003: unknown setting 'learning_rat'" in p.stderr, p.stderr
    other = tmp_path / "small.toml"
    shutil.copy(CONFIGS / "train" / "dynamic-routing-fast.toml", other)
    other.write_text(other.read_text().replace('env = "../env/dynamic.toml"',
                                               f'env = "{CONFIGS / "env" / "small.toml"}"'))
    p = run("--libs", "meshrl", "--meshrl-config", str(other))
    assert p.returncode != 0 and "trains another scenario" in p.stderr, p.stderr


def test_time_to_etx_races_maskable_ppo_with_the_activation_asked_for():
    pytest.importorskip("sb3_contrib")
    p = run("--libs", "sb3-maskable", "--sb3", 'activation="relu"', "--sb3", "n_steps=8", "--sb3-envs", "64",
            "--sb3", "batch_size=128", "--eval-every", "1024", "--eval-episodes", "256", "--budget-s", "5")
    assert p.returncode == 0, p.stderr[-3000:]
    row = next(line for line in p.stdout.splitlines() if line.startswith("| sb3-maskable | 1 |"))
    assert "MlpPolicy [64, 64] relu, make_vec_env 64 x 8" in row, row
    assert "sb3-maskable step     1,024" in p.stdout, p.stdout
