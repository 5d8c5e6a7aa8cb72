"""Secure aggregation of n clients' d-value vectors: meshrl.privacy.secure_sum against the
computation of Flower's SecAgg+ (its client stages from ``flwr.client.mod.secaggplus_mod``
and the server's unmasking from ``SecAggPlusWorkflow``, called in process without Flower's
transport, so only the cryptography and masking are timed).

    python python/benchmarks/bench_secagg.py --n 100 --d 10000 --dropped 10
    python python/benchmarks/bench_secagg.py --n 100 --d 10000 --degree 14 --threshold 8

Needs the meshrl wheel and, for the Flower column, ``flwr`` (tested with 1.41).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def time_meshrl(x: np.ndarray, threshold: int, degree: int | None, dropped: list[int], repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the best of `repeat` sessions."""
    from meshrl import privacy

    best = (float("inf"), float("inf"))
    for r in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = privacy.secure_sum(list(x), threshold, clip_range=8.0, degree=degree,
                                 dropouts={"masked_input": dropped}, session=r, seed=r)
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    kept = [i for i in range(len(x)) if i not in dropped]
    assert np.allclose(out.sum, x[kept].astype(np.float64).sum(0), atol=out.max_error + 1e-4)
    return best


def ring_neighbours(n: int, degree: int | None) -> list[list[int]]:
    """Holders of each client's shares (itself included): everyone, or a ring of `degree`."""
    if degree is None:
        return [list(range(n)) for _ in range(n)]
    half = degree // 2
    return [sorted({(i + k) % n for k in range(-half, half + 1)}) for i in range(n)]


def time_flower(x: np.ndarray, threshold: int, degree: int | None, dropped: list[int]) -> dict[str, float]:
    import flwr
    import importlib

    m = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract, get_parameters_shape, parameters_addition, parameters_mod, parameters_subtraction)
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    print(f"flwr {flwr.__version__}")
    n, _ = x.shape
    ids = list(range(1, n + 1))  # Flower node ids are non-zero
    holders = ring_neighbours(n, degree)
    mod_range, target_range, clip = 1 << 32, 1 << 22, 8.0
    cfg = {Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: len(holders[0]), Key.THRESHOLD: threshold,
           Key.CLIPPING_RANGE: clip, Key.TARGET_RANGE: target_range, Key.MOD_RANGE: mod_range,
           Key.MAX_WEIGHT: 1000.0}
    times = {}
    t0, c0 = time.perf_counter(), time.process_time()
    states = [m.SecAggPlusState(nid=nid) for nid in ids]
    keys = [m._setup(s, cfg) for s in states]
    inbox: dict[int, list[tuple[int, bytes]]] = {nid: [] for nid in ids}
    for i, s in enumerate(states):
        roster = {str(ids[j]): (keys[j][Key.PUBLIC_KEY_1], keys[j][Key.PUBLIC_KEY_2]) for j in holders[i]}
        out = m._share_keys(s, roster)
        for dst, ct in zip(out[Key.DESTINATION_LIST], out[Key.CIPHERTEXT_LIST]):
            inbox[dst].append((s.nid, ct))
    times["setup"] = time.perf_counter() - t0
    times["setup_cpu"] = time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    alive = [i for i in range(n) if i not in dropped]
    total = None
    for i in alive:
        s = states[i]
        srcs = [src for src, _ in inbox[s.nid]]
        conf = {Key.CIPHERTEXT_LIST: [ct for _, ct in inbox[s.nid]], Key.SOURCE_LIST: srcs}
        masked = m._collect_masked_vectors(s, conf, 1, ndarrays_to_parameters([x[i]]))
        vec = [bytes_to_ndarray(b) for b in masked[Key.MASKED_PARAMETERS]]
        total = vec if total is None else parameters_addition(total, vec)
    total = parameters_mod(total, mod_range)
    active = [ids[i] for i in alive]
    dead = [ids[i] for i in dropped]
    shares: dict[int, list[bytes]] = {}
    for i in alive:
        s = states[i]
        req = {Key.ACTIVE_NODE_ID_LIST: [a for a in active if a in s.rd_seed_share_dict],
               Key.DEAD_NODE_ID_LIST: [d for d in dead if d in s.sk1_share_dict]}
        resp = m._unmask(s, req)
        for owner, share in zip(resp[Key.NODE_ID_LIST], resp[Key.SHARE_LIST]):
            shares.setdefault(owner, []).append(share)
    shape = get_parameters_shape(total)
    for owner, share_list in shares.items():
        secret = combine_shares(share_list)
        if owner in active:
            total = parameters_subtraction(total, pseudo_rand_gen(secret, mod_range, shape))
        else:
            sk = bytes_to_private_key(secret)
            for j in holders[owner - 1]:
                if ids[j] == owner or ids[j] not in active:
                    continue
                key = generate_shared_key(sk, bytes_to_public_key(keys[j][Key.PUBLIC_KEY_1]))
                mask = pseudo_rand_gen(key, mod_range, shape)
                total = (parameters_addition if owner > ids[j] else parameters_subtraction)(total, mask)
    # As SecAggPlusWorkflow finishes: the weighted mean (all weights 1 here).
    total = parameters_mod(total, mod_range)
    q_total_ratio, total = factor_extract(total)
    mean = dequantize(total, clip, target_range)[0]
    mean = (mean - (len(alive) - 1) * clip) * (target_range / q_total_ratio)
    times["round"] = time.perf_counter() - t0
    times["round_cpu"] = time.process_time() - c0
    times["max_abs_error"] = float(np.abs(mean - x[alive].astype(np.float64).mean(0)).max())
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--d", type=int, default=10_000)
    p.add_argument("--threshold", type=int, default=51)
    p.add_argument("--degree", type=int, default=None)
    p.add_argument("--dropped", type=int, default=10, help="clients that drop before sending a masked input")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-flower", action="store_true")
    args = p.parse_args()
    x = np.random.default_rng(0).uniform(-1, 1, size=(args.n, args.d)).astype(np.float32)
    # Spread evenly, so every SecAgg+ neighbourhood keeps its threshold.
    dropped = sorted({round(i * args.n / args.dropped) for i in range(args.dropped)}) if args.dropped else []
    print(f"n = {args.n}, d = {args.d}, t = {args.threshold}, degree = {args.degree or 'complete'}, "
          f"{args.dropped} dropped before their masked input")
    wall, cpu = time_meshrl(x, args.threshold, args.degree, dropped, args.repeat)
    print(f"meshrl secure_sum (all four stages, best of {args.repeat}): {wall:.3f} s wall, {cpu:.3f} s CPU")
    if not args.skip_flower:
        t = time_flower(x, args.threshold, args.degree, dropped)
        print(f"Flower SecAgg+ computation (one process, one thread): setup {t['setup']:.1f} s wall "
              f"({t['setup_cpu']:.1f} s CPU), round {t['round']:.1f} s wall ({t['round_cpu']:.1f} s CPU); "
              f"max abs error of the mean {t['max_abs_error']:.1e}")


if __name__ == "__main__":
    main()
