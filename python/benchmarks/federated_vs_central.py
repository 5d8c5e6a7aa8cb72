"""The federated routers' proof: 20 non-IID workers (configs/federate/mesh20.toml) against a policy
trained centrally on the same number of samples, ETX and the other baselines, paired on the same
2,000 packets (RESULTS.md, "Federated routers"). Run from the repository root:

    python python/benchmarks/federated_vs_central.py
"""
import time, json, sys
import meshrl.federated as fl
t = time.time()
fed = fl.Federation("configs/federate/mesh20.toml")
for r in fed.run():
    print(r["round"], len(r["participants"]), r["global_delivery"], round(r["wall_s"], 2), flush=True)
print("federation wall", time.time() - t, "samples", fed.total_samples, flush=True)
t = time.time()
out = fed.evaluate(episodes=2000, seed=99, central=True)
print("eval+central wall", time.time() - t)
for s in out["summaries"]:
    print(s["policy"], round(s["delivery_ratio"], 3), s["delivery_ci"])
for p in out["paired"]:
    print(p["a"], "-", p["b"], round(p["delivery_diff"], 3), p["delivery_diff_ci"])
