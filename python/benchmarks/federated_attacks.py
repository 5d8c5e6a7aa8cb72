"""The attack x rule table of RESULTS.md: 20 % Byzantine workers on configs/federate/mesh20.toml,
each cell the global model's greedy delivery on the same 2,000 packets, and the Byzantine updates
the rule set aside / that reached it. Run from the repository root (ROUNDS defaults to 15):

    python python/benchmarks/federated_attacks.py [ROUNDS]
"""
import time, sys
import meshrl.federated as fl
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
base = fl.load_config("configs/federate/mesh20.toml")
attacks = ["none", "sign_flip", "ipm", "alie", "reward_poison"]
rules = ["fedavg", "multi_krum", "median", "trimmed_mean"]
t0 = time.time()
for attack in attacks:
    row = []
    for rule in rules:
        cfg = fl.load_config(base, federation={"rounds": ROUNDS, "eval_every": 0, "rule": rule, "assumed_byzantine": 2, "trim_beta": 0.2},
                             attack={"kind": attack, "fraction": 0.2 if attack != "none" else 0.0, "scale": 1.5 if attack == "alie" else 4.0})
        fed = fl.Federation(cfg)
        reports = fed.run()
        byz = set(i for i, b in enumerate(fed.byzantine) if b)
        aside = sum(len(set(r["set_aside"]) & byz) for r in reports)
        part = sum(r["byzantine_participants"] for r in reports)
        d = fed.evaluate(episodes=2000, seed=99, baselines=[])["summaries"][0]["delivery_ratio"]
        row.append(f"{d:.3f} ({aside}/{part})")
        print(attack, rule, row[-1], f"{time.time()-t0:.0f}s", flush=True)
    print("| " + attack + " | " + " | ".join(row) + " |", flush=True)
