"""meshrl.fl against NumPy reference implementations of each rule, plus properties and errors."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrl import _core, fl
from meshrl.fl import attacks

# ---- NumPy references (Flower's aggregate.py semantics, float64) -------------------------


def ref_fedavg(x, w=None):
    return np.average(x.astype(np.float64), axis=0, weights=w)


def ref_distances(x):
    x = x.astype(np.float64)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def ref_krum_scores(x, f):
    dist = ref_distances(x)
    k = max(1, len(x) - f - 2)
    return np.array([np.sort(np.delete(row, i))[:k].sum() for i, row in enumerate(dist)])


def ref_lowest(scores, x, m):
    """Indices of the m lowest scores; exact ties broken by comparing the vectors (meshrl's
    documented rule; Flower's argmin takes the first index)."""
    return sorted(range(len(scores)), key=lambda i: (scores[i], tuple(x[i]), i))[:m]


def ref_krum(x, f, m=1, w=None):
    scores = ref_krum_scores(x, f)
    best = ref_lowest(scores, x, m)
    if m == 1:
        return x[best[0]].astype(np.float64)
    return ref_fedavg(x[best], None if w is None else np.asarray(w)[best])


def ref_trimmed_mean(x, beta):
    n = len(x)
    lo = int(beta * n)
    hi = n - lo
    part = np.partition(x.astype(np.float64), (lo, hi - 1), axis=0)
    return part[lo:hi].mean(axis=0)


def ref_bulyan(x, f):
    remaining = list(range(len(x)))
    theta, beta = len(x) - 2 * f, len(x) - 4 * f
    chosen = []
    for _ in range(theta):
        scores = ref_krum_scores(x[remaining], f)
        chosen.append(remaining.pop(ref_lowest(scores, x[remaining], 1)[0]))
    sel = x[chosen].astype(np.float64)
    med = np.median(sel, axis=0)
    idx = np.argsort(np.abs(sel - med), axis=0, kind="stable")[:beta]
    return np.take_along_axis(sel, idx, axis=0).mean(axis=0)


def ref_geometric_median(x, w=None, nu=1e-6, max_iter=100, eps=1e-6):
    x = x.astype(np.float64)
    a = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    a = a / a.sum()
    z = a @ x
    obj = a @ np.linalg.norm(x - z, axis=1)
    for _ in range(max_iter):
        b = a / np.maximum(nu, np.linalg.norm(x - z, axis=1))
        z = (b / b.sum()) @ x
        new = a @ np.linalg.norm(x - z, axis=1)
        done = abs(obj - new) <= eps * new
        obj = new
        if done:
            break
    return z


def ref_centered_clipping(x, center, tau, iterations):
    x = x.astype(np.float64)
    v = np.median(x, axis=0) if center is None else center.astype(np.float64)
    for _ in range(iterations):
        diff = x - v
        norms = np.linalg.norm(diff, axis=1)
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-300))
        v = v + (diff * scale[:, None]).mean(axis=0)
    return v


def ref_nnm(x, f):
    dist = ref_distances(x)
    keep = len(x) - f
    return np.stack([x[np.argsort(row, kind="stable")[:keep]].astype(np.float64).mean(0) for row in dist])


# ---- tests ------------------------------------------------------------------------------

RNG = np.random.default_rng(1234)


def data(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), b, rtol=tol, atol=tol)


@pytest.mark.parametrize("seed", range(3))
def test_rules_match_numpy_references(seed):
    x = data(23, 301, seed)
    w = np.random.default_rng(seed).integers(1, 100, size=23).astype(np.float32)
    close(fl.fedavg(x), ref_fedavg(x))
    close(fl.fedavg(x, weights=w), ref_fedavg(x, w))
    close(fl.median(x), np.median(x.astype(np.float64), axis=0))
    close(fl.median(x[:22]), np.median(x[:22].astype(np.float64), axis=0))
    for beta in (0.0, 0.1, 0.3):
        close(fl.trimmed_mean(x, beta), ref_trimmed_mean(x, beta))
    for f in (0, 3, 5):
        close(fl.krum(x, f), ref_krum(x, f))
        close(fl.krum(x, f, num_selected=4, weights=w), ref_krum(x, f, 4, w))
    for f in (1, 3, 5):
        close(fl.bulyan(x, f), ref_bulyan(x, f))
    close(fl.geometric_median(x), ref_geometric_median(x), tol=1e-4)
    close(fl.geometric_median(x, weights=w, max_iter=3), ref_geometric_median(x, w, max_iter=3), tol=1e-5)
    center = x.mean(0)
    close(fl.centered_clipping(x, center=center, tau=2.0, iterations=3), ref_centered_clipping(x, center, 2.0, 3))
    close(fl.centered_clipping(x, tau=0.5), ref_centered_clipping(x, None, 0.5, 1))
    close(fl.nnm(x, 4), ref_nnm(x, 4))


def test_attacks_match_their_formulas():
    h = data(10, 50, 7)
    mean, std = h.astype(np.float64).mean(0), h.astype(np.float64).std(0)
    close(attacks.sign_flip(h, 3, scale=2.0), np.tile(-2.0 * mean, (3, 1)))
    close(attacks.inner_product_manipulation(h, 2, tau=0.1), np.tile(-0.1 * mean, (2, 1)))
    close(attacks.a_little_is_enough(h, 4, tau=1.5), np.tile(mean + 1.5 * std, (4, 1)))
    g = attacks.gaussian(h, 200, sigma=3.0, seed=1)
    assert g.shape == (200, 50)
    assert abs((g - mean).std() - 3.0) < 0.1 and abs((g - mean).mean()) < 0.1
    np.testing.assert_array_equal(g, attacks.gaussian(h, 200, sigma=3.0, seed=1))


def test_inputs_are_read_as_float32_and_lists_work():
    x64 = data(9, 40).astype(np.float64)
    close(fl.median(x64), np.median(x64.astype(np.float32).astype(np.float64), axis=0))
    fortran = np.asfortranarray(data(9, 40))
    close(fl.fedavg(fortran), ref_fedavg(fortran))
    rows = list(data(9, 40))
    close(fl.median(rows), np.median(np.stack(rows).astype(np.float64), axis=0))


def test_invalid_clients_error_or_drop_with_report():
    x = data(8, 30)
    x[2, 5] = np.nan
    x[6, 0] = np.inf
    with pytest.raises(ValueError, match=r"client 2: 1 non-finite values \(first at coordinate 5\); client 6"):
        fl.median(x)
    res = fl.median(x, on_invalid="drop", return_report=True)
    assert res.accepted == [0, 1, 3, 4, 5, 7]
    assert [i for i, _ in res.rejected] == [2, 6]
    close(res.aggregate, np.median(x[res.accepted].astype(np.float64), axis=0))
    with pytest.warns(UserWarning, match="dropped 2 invalid"):
        fl.median(x, on_invalid="drop")
    rows = list(data(6, 30)) + [np.zeros(29, dtype=np.float32)]
    res = fl.fedavg(rows, on_invalid="drop", return_report=True)
    assert res.rejected == [(6, "length 29, expected 30")]
    w = np.ones(7, dtype=np.float32)
    w[1] = -3
    res = fl.fedavg(rows, weights=w, on_invalid="drop", return_report=True)
    assert (1, "negative or non-finite weight") in res.rejected


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda x: fl.krum(x, 4), r"n > 2f \+ 2"),
        (lambda x: fl.bulyan(x, 2), r"n >= 4f \+ 3"),
        (lambda x: fl.trimmed_mean(x, 0.5), "beta"),
        (lambda x: fl.krum(x, 1, num_selected=0), "num_selected"),
        (lambda x: fl.fedavg(x, weights=np.ones(3)), "weights"),
        (lambda x: fl.fedavg(x[0]), "2-D"),
        (lambda x: fl.median(x, on_invalid="ignore"), "on_invalid"),
        (lambda x: fl.centered_clipping(x, center=np.zeros(3)), "center"),
        (lambda x: fl.geometric_median(x, nu=0), "nu"),
        (lambda x: fl.nnm(x, 10), "nnm"),
    ],
)
def test_bad_arguments_raise_value_error(call, needle):
    with pytest.raises(ValueError, match=needle):
        call(data(10, 20))


@pytest.mark.parametrize(
    "call, error, needle",
    [
        # Huge counts used to wrap (2**63: 2f + 2 overflowed to 2) or panic (2**62).
        (lambda x: fl.krum(x, 2**63), ValueError, r"num_byzantine must be in 0\.\.=10 .*got 9223372036854775808"),
        (lambda x: fl.bulyan(x, 2**62), ValueError, r"num_byzantine must be in 0\.\.=10"),
        (lambda x: fl.krum(x, 2**64), ValueError, "num_byzantine"),
        (lambda x: fl.krum(x, -1), ValueError, r"num_byzantine must be in 0\.\.=10 .*got -1"),
        (lambda x: fl.nnm(x, 2**63), ValueError, "num_byzantine"),
        (lambda x: fl.nnm(x, -2), ValueError, "num_byzantine"),
        (lambda x: fl.krum(x, 1, num_selected=11), ValueError, r"num_selected must be in 1\.\.=10"),
        (lambda x: fl.krum(x, 1, num_selected=-1), ValueError, "num_selected"),
        (lambda x: fl.geometric_median(x, max_iter=-1), ValueError, "max_iter"),
        (lambda x: fl.geometric_median(x, max_iter=2**64), ValueError, "max_iter"),
        (lambda x: fl.centered_clipping(x, iterations=-3), ValueError, "iterations"),
        (lambda x: attacks.sign_flip(x, -1), ValueError, "num_byzantine"),
        (lambda x: attacks.gaussian(x, 2**62), ValueError, r"num_byzantine must be in 0\.\.=107374182 "),
        (lambda x: attacks.gaussian(x, 2, seed=-1), ValueError, "seed"),
        # Floats and bools are not counts.
        (lambda x: fl.krum(x, 1.0), TypeError, r"num_byzantine must be an int in 0\.\.=10.*float"),
        (lambda x: fl.krum(x, True), TypeError, "num_byzantine .*bool"),
        (lambda x: fl.bulyan(x, np.float64(1)), TypeError, "num_byzantine"),
        (lambda x: fl.krum(x, 1, num_selected=2.5), TypeError, "num_selected"),
        (lambda x: fl.krum(x, 1, num_selected=False), TypeError, "num_selected"),
        (lambda x: fl.geometric_median(x, max_iter=10.0), TypeError, "max_iter"),
        (lambda x: fl.centered_clipping(x, iterations=True), TypeError, "iterations"),
        (lambda x: fl.nnm(x, 1.5), TypeError, "num_byzantine"),
        (lambda x: fl.nnm(x, "2"), TypeError, "num_byzantine"),
        (lambda x: fl.krum(x, None), TypeError, "num_byzantine"),
        (lambda x: _core.attack("sign_flip", x, 2.0), TypeError, "num_byzantine"),
        (lambda x: _core.attack("sign_flip", x, True), TypeError, "num_byzantine"),
        (lambda x: _core.attack("gaussian", x, 2, seed=0.5), TypeError, "seed"),
        (lambda x: _core.aggregate("median", x, dim=0), ValueError, "dim"),
        (lambda x: _core.aggregate("median", x, dim=3.0), TypeError, "dim"),
    ],
)
def test_bad_counts_raise_errors_naming_the_parameter_and_range(call, error, needle):
    with pytest.raises(error, match=needle):
        call(data(10, 20))


def test_counts_accept_python_and_numpy_ints():
    x = data(12, 20)
    for f in (2, np.int64(2), np.uint8(2), np.int32(2)):
        close(fl.krum(x, f, num_selected=np.int16(3)), ref_krum(x, 2, 3))
        close(fl.bulyan(x, f), ref_bulyan(x, 2))
        close(fl.nnm(x, f), ref_nnm(x, 2))
        assert attacks.sign_flip(x, f).shape == (2, 20)
    close(fl.krum(x, 0), ref_krum(x, 0))
    close(fl.geometric_median(x, max_iter=np.int64(3)), ref_geometric_median(x, max_iter=3), tol=1e-5)
    close(fl.centered_clipping(x, iterations=0), np.median(x.astype(np.float64), axis=0))


def test_byzantine_minority_cannot_drag_robust_rules():
    honest = 1.0 + 0.1 * data(40, 500, 3)
    byz = attacks.sign_flip(honest, 10, scale=50.0)
    x = np.concatenate([honest, byz])
    target = honest.astype(np.float64).mean(0)
    broken = np.linalg.norm(fl.fedavg(x) - target)
    for agg in (fl.median(x), fl.trimmed_mean(x, 0.25), fl.krum(x, 10), fl.bulyan(x, 10), fl.geometric_median(x),
                fl.krum(fl.nnm(x, 10), 10)):
        assert np.linalg.norm(agg - target) * 20 < broken


@settings(max_examples=40, deadline=None)
@given(n=st.integers(7, 30), d=st.integers(1, 60), seed=st.integers(0, 10_000), data_seed=st.integers(0, 10_000))
def test_permutation_invariance(n, d, seed, data_seed):
    x = data(n, d, data_seed)
    perm = np.random.default_rng(seed).permutation(n)
    f = (n - 3) // 4
    for rule in (fl.fedavg, fl.median, lambda u: fl.trimmed_mean(u, 0.2), lambda u: fl.krum(u, f),
                 lambda u: fl.krum(u, f, num_selected=3), lambda u: fl.bulyan(u, f), fl.geometric_median,
                 lambda u: fl.centered_clipping(u, tau=0.3, iterations=2)):
        close(rule(x), rule(x[perm]), tol=1e-5)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(5, 25), f=st.integers(0, 4), d=st.integers(1, 30), value=st.floats(-1e6, 1e6), seed=st.integers(0, 999))
def test_median_and_trimmed_mean_stay_inside_the_honest_range(h, f, d, value, seed):
    honest = data(h, d, seed)
    x = np.concatenate([honest, np.full((f, d), value, dtype=np.float32)])
    n = h + f
    lo, hi = honest.min(0) - 1e-6, honest.max(0) + 1e-6
    if f < h:
        assert np.all((fl.median(x) >= lo) & (fl.median(x) <= hi))
    beta = min((f + 0.5) / n, 0.49)
    if 2 * int(beta * n) < n:
        tm = fl.trimmed_mean(x, beta)
        assert np.all((tm >= lo) & (tm <= hi))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(11, 25), d=st.integers(1, 40), seed=st.integers(0, 999))
def test_every_rule_is_the_mean_on_identical_inputs(n, d, seed):
    one = data(1, d, seed)
    x = np.repeat(one, n, axis=0)
    f = (n - 3) // 4
    for agg in (fl.fedavg(x), fl.median(x), fl.trimmed_mean(x, 0.2), fl.krum(x, f), fl.krum(x, f, num_selected=4),
                fl.bulyan(x, f), fl.geometric_median(x), fl.centered_clipping(x), fl.nnm(x, f)[0]):
        close(agg, one[0].astype(np.float64), tol=1e-6)


def test_attack_counts_are_not_truncated():
    honest = np.ones((5, 3), np.float32)
    for bad in (2.7, True):
        with pytest.raises(TypeError, match="num_byzantine"):
            attacks.sign_flip(honest, num_byzantine=bad)
    with pytest.raises(TypeError, match="seed"):
        attacks.gaussian(honest, num_byzantine=1, seed=1.5)
