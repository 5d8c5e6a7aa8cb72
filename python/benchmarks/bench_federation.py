"""Federation round time and worker memory against mesh size (20, 50, 100, 200 nodes, one worker
per node, 10 sampled per round; the configs/federate/mesh20.toml settings with the area grown to
keep the density). Prints the table of BENCHMARKS.md. Run from the repository root:

    python python/benchmarks/bench_federation.py [NODES...]

The Rust twin of this script is `rust/federation/benches/rounds.rs`.
"""

import sys
import time

import meshrl.federated as fl


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main(sizes):
    base = fl.load_config("configs/federate/mesh20.toml")
    print("| nodes | workers | sampled/round | wall s/round (mean of 3) | evaluation s (1,000 packets) | memory per worker (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        cfg = fl.load_config(base, federation={"rounds": 1000, "eval_every": 0})
        cfg["env"]["topology"]["num_nodes"] = n
        cfg["env"]["topology"]["area_m"] = 420.0 * (n / 20) ** 0.5
        before = rss()
        workers = [fl.Worker(cfg, i) for i in range(n)]
        per_worker = (rss() - before) / n / 2**20
        del workers
        fed = fl.Federation(cfg)
        fed.run_round()  # warm-up
        t = time.perf_counter()
        fed.run(3)
        per_round = (time.perf_counter() - t) / 3
        t = time.perf_counter()
        fed.evaluate(episodes=1000, baselines=[])
        ev = time.perf_counter() - t
        print(f"| {n} | {fed.num_workers} | {cfg['federation']['clients_per_round']} | {per_round:.2f} | {ev:.2f} | {per_worker:.2f} |", flush=True)


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [20, 50, 100, 200])
