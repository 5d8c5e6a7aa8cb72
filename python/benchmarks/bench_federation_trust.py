"""What trust costs a federation: the 20-node federation of configs/federate/mesh20.toml with
and without ``[trust]`` (signed updates, PBFT among 4, 7 and 10 validators, f of them Byzantine
twins, the ledger written with fsync), in one process. Prints the table of BENCHMARKS.md: wall
seconds per round next to an untrusted run measured just before (the same rounds) and their ratio, the virtual time PBFT adds, the PBFT
messages per round and the ledger's bytes per round. Run from the repository root:

    python python/benchmarks/bench_federation_trust.py [ROUNDS]
"""

import os
import statistics
import sys
import tempfile
import time

import meshrl.federated as fl


def ledger_bytes(path: str) -> int:
    total = os.path.getsize(path)
    weights = path + ".weights"
    for name in os.listdir(weights):
        total += os.path.getsize(os.path.join(weights, name))
    return total


def measure(cfg, rounds):
    fed = fl.Federation(cfg)
    fed.run_round()  # warm-up: workers built, ledger created
    t = time.perf_counter()
    reports = fed.run(rounds)
    wall = (time.perf_counter() - t) / rounds
    return fed, reports, wall


def main(rounds: int) -> None:
    base = fl.load_config("configs/federate/mesh20.toml", federation={"rounds": 1000, "eval_every": 0})
    print(f"{rounds} rounds after a warm-up, each trusted run next to an untrusted one")
    print("| validators | Byzantine (twins) | wall s/round untrusted | trusted | ratio | PBFT virtual ms/round | PBFT messages/round | views > 0 | ledger KiB/round |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (4, 7, 10):
        _, _, plain = measure(base, rounds)
        f = (n - 1) // 3
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ledger.mlg")
            cfg = fl.load_config(
                base,
                trust={"ledger": path, "validators": n, "byzantine_validators": f, "byzantine_behavior": "twins"},
            )
            fed, reports, wall = measure(cfg, rounds)
            assert all(r["completed"] for r in reports), [r["failure"] for r in reports]
            ms = statistics.mean(r["consensus_ms"] for r in reports)
            msgs = statistics.mean(r["consensus_messages"] for r in reports)
            views = sum(r["consensus_view"] > 0 for r in reports)
            kib = ledger_bytes(path) / (rounds + 1) / 1024
            print(f"| {n} | {f} | {plain:.3f} | {wall:.3f} | {wall / plain:.2f} | {ms:.0f} | {msgs:.0f} | {views}/{rounds} | {kib:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
