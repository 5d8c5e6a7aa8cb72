"""A private federation: configs/federate/mesh20.toml with DP-FedAvg (z = 1.0, fixed clipping
at C = 0.1, δ = 1e-5), its ε per round, and the global model's delivery next to ETX and random on
the same 2,000 packets (RESULTS.md). Run from the repository root:

    python python/benchmarks/federated_dp.py
"""

import time

import meshrl.federated as fl

t = time.time()
fed = fl.Federation("configs/federate/mesh20.toml", federation={"eval_every": 0},
                    privacy={"noise_multiplier": 1.0, "clip_norm": 0.1, "delta": 1e-5})
reports = fed.run()
print("rounds", len(reports), "wall", round(time.time() - t, 1), "s")
print("epsilon per round", [round(r["epsilon"], 3) for r in reports if r["epsilon"] is not None])
print("clip norm per round", [round(r["clip_norm"], 4) for r in reports if r["clip_norm"] is not None])
out = fed.evaluate(episodes=2000, seed=99, baselines=["etx", "random"])
for s in out["summaries"]:
    print(s["policy"], round(s["delivery_ratio"], 3), [round(x, 3) for x in s["delivery_ci"].values()])
