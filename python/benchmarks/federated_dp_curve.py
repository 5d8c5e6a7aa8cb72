"""Delivery against ε: the mesh20 federation (configs/federate/mesh20.toml, 30 rounds, K = 10 of
20 workers per round) with DP-FedAvg at several noise multipliers z (fixed clipping at C = 0.1,
δ = 1e-5; z = 0 runs without DP) and several federation seeds (which also seed the noise), each
global model evaluated on the same 2,000 packets, next to
ETX and random routing on those packets (RESULTS.md, "Delivery against ε"). Runs one federation
after another (each is CPU-heavy). From the repository root:

    python python/benchmarks/federated_dp_curve.py        # z = 0 … 64, federation seeds 1, 2, 3
    python python/benchmarks/federated_dp_curve.py --z 0 1 --seeds 1 --rounds 10 --packets 500

Prints a markdown table and, with ``--json PATH``, writes the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import meshrl.federated as fl

CONFIG = "configs/federate/mesh20.toml"


def curve(config: str, noise_multipliers, rounds: int, packets: int, seeds=(1,), clip_norm: float = 0.1,
          delta: float = 1e-5, eval_seed: int = 99, log=print) -> dict:
    """One federation per (z, federation seed); returns ``{"rows": [...], "etx": summary,
    "random": summary}``, each row holding z, the seed, ε at δ after the last round, and the
    global model's delivery with its CI on the same ``packets`` packets (``eval_seed``)."""
    rows, baselines = [], None
    for z, fed_seed in ((z, s) for z in noise_multipliers for s in seeds):
        t = time.time()
        privacy = {"noise_multiplier": float(z), "clip_norm": clip_norm, "delta": delta} if z > 0 else None
        overrides = {"federation": {"rounds": rounds, "eval_every": 0, "seed": int(fed_seed)}}
        if privacy:
            overrides["privacy"] = privacy
        fed = fl.Federation(config, **overrides)
        reports = fed.run()
        eps = [r["epsilon"] for r in reports if r.get("epsilon") is not None]
        out = fed.evaluate(episodes=packets, seed=eval_seed, baselines=[] if baselines else ["etx", "random"])
        by_policy = {s["policy"]: s for s in out["summaries"]}
        if baselines is None:
            baselines = {k: by_policy[f"baseline:{k}"] for k in ("etx", "random")}
        model = next(s for name, s in by_policy.items() if not name.startswith("baseline:"))
        row = {
            "noise_multiplier": float(z),
            "seed": int(fed_seed),
            "epsilon": eps[-1] if eps else math.inf,
            "delta": delta if privacy else None,
            "rounds": len(reports),
            "delivery": model["delivery_ratio"],
            "delivery_ci": [model["delivery_ci"]["low"], model["delivery_ci"]["high"]],
            "wall_s": round(time.time() - t, 1),
        }
        rows.append(row)
        log(f"z = {z}, seed {fed_seed}: ε = {row['epsilon']:.3g}, delivery {row['delivery']:.3f} {row['delivery_ci']}, {row['wall_s']} s")
    return {"rows": rows, "etx": baselines["etx"], "random": baselines["random"], "packets": packets}


def table(result: dict) -> str:
    """One line per z: ε, the delivery per federation seed and their mean, ETX and random."""
    etx, rnd = result["etx"], result["random"]

    def ci(s):
        return f"{s['delivery_ratio']:.3f} [{s['delivery_ci']['low']:.3f}, {s['delivery_ci']['high']:.3f}]"

    by_z: dict[float, list] = {}
    for r in result["rows"]:
        by_z.setdefault(r["noise_multiplier"], []).append(r)
    seeds = ", ".join(str(r["seed"]) for r in result["rows"][:len(next(iter(by_z.values())))])
    lines = [f"| z | ε (δ = 1e-5) | delivery, seeds {seeds} [95 % CI] | mean | ETX | random |",
             "|---:|---:|---|---:|---:|---:|"]
    for z, rs in by_z.items():
        eps = rs[0]["epsilon"]
        eps = "∞ (no DP)" if math.isinf(eps) else f"{eps:.2f}"
        each = "; ".join(f"{r['delivery']:.3f} [{r['delivery_ci'][0]:.3f}, {r['delivery_ci'][1]:.3f}]" for r in rs)
        mean = sum(r["delivery"] for r in rs) / len(rs)
        lines.append(f"| {z:g} | {eps} | {each} | {mean:.3f} | {ci(etx)} | {ci(rnd)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--z", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="federation seeds")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--packets", type=int, default=2000)
    p.add_argument("--clip-norm", type=float, default=0.1)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    result = curve(CONFIG, a.z, a.rounds, a.packets, seeds=a.seeds, clip_norm=a.clip_norm)
    print(table(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
