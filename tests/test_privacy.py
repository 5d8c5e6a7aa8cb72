"""meshrl.privacy: the accountant against dp-accounting's numbers, DP-FedAvg's clipping and
noise, secure aggregation's sums and aborts, and clear errors for bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrl import MeshrlError, privacy
from meshrl.privacy import RDPAccountant, SecureAggregationError

# ---- accountant ------------------------------------------------------------------------
# dp-accounting 0.6.0 (rust/privacy/tests/reference/accountant_fixtures.py prints these).


def test_headline_point_matches_dp_accounting():
    acc = RDPAccountant()
    acc.step(noise_multiplier=1.1, sample_rate=0.1, steps=100)
    eps, alpha = acc.get_privacy_spent(delta=1e-5)
    assert alpha == 3.6
    assert eps == pytest.approx(6.62076948219146, rel=1e-6)
    assert acc.get_epsilon(1e-5) == eps


@pytest.mark.parametrize(
    "sigma,q,steps,delta,eps",
    [(1.0, 0.01, 1000, 1e-5, 2.101366525420273), (0.8, 0.05, 500, 1e-6, 14.919412001048531),
     (4.0, 0.5, 200, 1e-3, 7.37471353366945)],
)
def test_more_points_match_dp_accounting(sigma, q, steps, delta, eps):
    acc = RDPAccountant()
    acc.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    assert acc.get_epsilon(delta) == pytest.approx(eps, rel=1e-6)


def test_opacus_style_one_step_at_a_time():
    acc = RDPAccountant()
    for _ in range(100):
        acc.step(noise_multiplier=1.1, sample_rate=0.1)
    assert acc.history == [(1.1, 0.1, 100)]
    assert len(acc) == 1
    assert acc.get_epsilon(1e-5) == pytest.approx(6.62076948219146, rel=1e-6)
    acc.step(noise_multiplier=2.0, sample_rate=0.1)
    assert len(acc) == 2
    assert len(acc.orders) == len(acc.rdp) == 156


def test_noise_multiplier_for_round_trip():
    sigma = privacy.noise_multiplier_for(target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=1000)
    assert sigma == pytest.approx(1.5131221642023396, rel=2e-6)  # dp-accounting calibrate_dp_mechanism
    acc = RDPAccountant()
    acc.step(noise_multiplier=sigma, sample_rate=0.01, steps=1000)
    assert acc.get_epsilon(1e-5) <= 1.0


def test_compute_rdp_full_batch_closed_form():
    assert privacy.compute_rdp(2.0, 1.0, 3, [2.0, 10.5]) == pytest.approx([0.75, 3 * 10.5 / 8])


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(noise_multiplier=-1.0, sample_rate=0.1), "noise_multiplier"),
        (dict(noise_multiplier=float("nan"), sample_rate=0.1), "noise_multiplier"),
        (dict(noise_multiplier=float("inf"), sample_rate=0.1), "noise_multiplier"),
        (dict(noise_multiplier=1.0, sample_rate=0.0), "sample_rate"),
        (dict(noise_multiplier=1.0, sample_rate=1.5), "sample_rate"),
        (dict(noise_multiplier=1.0, sample_rate=float("nan")), "sample_rate"),
        (dict(noise_multiplier=1.0, sample_rate=0.1, steps=-1), "steps"),
        (dict(noise_multiplier=1.0, sample_rate=0.1, steps=2**70), "steps"),
    ],
)
def test_bad_steps_name_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        RDPAccountant().step(**kwargs)


@pytest.mark.parametrize("steps", [1.5, True, "3"])
def test_steps_of_the_wrong_type(steps):
    with pytest.raises(TypeError, match="steps"):
        RDPAccountant().step(noise_multiplier=1.0, sample_rate=0.1, steps=steps)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 2.0, float("nan")])
def test_delta_outside_0_1(delta):
    acc = RDPAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.1)
    with pytest.raises(ValueError, match="delta"):
        acc.get_epsilon(delta)
    with pytest.raises(ValueError, match="delta"):
        acc.get_privacy_spent(delta)
    with pytest.raises(ValueError, match="delta"):
        privacy.noise_multiplier_for(1.0, delta, 0.1, 10)


def test_noise_multiplier_for_bad_arguments():
    with pytest.raises(ValueError, match="target_epsilon"):
        privacy.noise_multiplier_for(-1.0, 1e-5, 0.1, 10)
    with pytest.raises(ValueError, match="target_epsilon"):
        privacy.noise_multiplier_for(float("nan"), 1e-5, 0.1, 10)
    with pytest.raises(ValueError, match="sample_rate"):
        privacy.noise_multiplier_for(1.0, 1e-5, 0.0, 10)
    with pytest.raises(ValueError, match="steps"):
        privacy.noise_multiplier_for(1.0, 1e-5, 0.1, 0)
    with pytest.raises(ValueError, match="orders"):
        RDPAccountant(orders=[0.5, 2.0])


# ---- DP ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=200),
    st.floats(1e-4, 1e4),
)
def test_clipped_norm_never_exceeds_the_clip_norm(values, clip):
    v = np.array(values, dtype=np.float32)
    out, norm = privacy.clip_l2(v, clip)
    assert norm == pytest.approx(float(np.linalg.norm(v.astype(np.float64))), rel=1e-9, abs=1e-30)
    assert float(np.linalg.norm(out.astype(np.float64))) <= clip
    if norm <= clip:
        np.testing.assert_array_equal(out, v)


def test_clip_bad_input():
    with pytest.raises(ValueError, match="update"):
        privacy.clip_l2(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="update"):
        privacy.clip_l2(np.array([1.0, np.nan]), 1.0)
    for c in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="clip_norm"):
            privacy.clip_l2(np.ones(3), c)


def test_gaussian_noise_std_and_seed():
    x = privacy.add_gaussian_noise(np.zeros(200_000), 0.7, seed=3)
    assert x.dtype == np.float32
    assert float(np.std(x)) == pytest.approx(0.7, rel=0.02)
    np.testing.assert_array_equal(x, privacy.add_gaussian_noise(np.zeros(200_000), 0.7, seed=3))
    with pytest.raises(ValueError, match="stddev"):
        privacy.add_gaussian_noise(np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="seed"):
        privacy.add_gaussian_noise(np.zeros(3), 1.0, seed=2**80)


def test_dp_fedavg_round_noise_is_z_times_c():
    dp = privacy.DPFedAvg(noise_multiplier=1.1, clip_norm=0.5, seed=1)
    r = dp.aggregate(np.zeros((4, 100_000), dtype=np.float32))
    assert r.noise_stddev == pytest.approx(0.55)
    assert float(np.std(r.sum)) == pytest.approx(0.55, rel=0.02)
    np.testing.assert_allclose(r.mean, r.sum / 4, rtol=1e-6)
    assert r.clip_norm == r.next_clip_norm == 0.5 and r.num_clients == 4


def test_dp_fedavg_without_noise_is_the_mean_of_clipped_updates():
    dp = privacy.DPFedAvg(noise_multiplier=0.0, clip_norm=1.0)
    r = dp.aggregate(np.array([[3.0, 4.0], [0.1, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(r.sum, [0.7, 0.8], atol=1e-5)


def test_adaptive_clip_norm_grows_when_too_many_updates_are_clipped():
    rng = np.random.default_rng(0)
    updates = rng.normal(size=(100, 20)).astype(np.float32)  # norms ≈ 4.5, all above C = 0.1
    dp = privacy.DPFedAvg(noise_multiplier=1.0, clip_norm=0.1, adaptive=True, seed=2)
    first = dp.aggregate(updates)
    assert first.noisy_unclipped_fraction < 0.5
    assert first.next_clip_norm > first.clip_norm == 0.1
    for _ in range(200):
        last = dp.aggregate(updates)
    median_norm = float(np.median(np.linalg.norm(updates, axis=1)))
    assert last.clip_norm == pytest.approx(median_norm, rel=0.1)


def test_contribution_and_finish_round_compose_with_a_secure_sum():
    dp = privacy.DPFedAvg(noise_multiplier=0.0, clip_norm=1.0, adaptive=True, clipped_count_stddev=0.0)
    rng = np.random.default_rng(1)
    updates = rng.normal(size=(6, 8)).astype(np.float32) * np.array([[0.01], [0.01], [0.01], [5], [5], [5]], dtype=np.float32)
    contributions = [dp.client_contribution(u, num_clients=6, seed=i) for i, u in enumerate(updates)]
    assert all(len(c) == 9 for c in contributions)  # trailing unclipped bit
    s = privacy.secure_sum(contributions, threshold=4, clip_range=1.0)
    r = dp.finish_round(s.sum, num_clients=6)
    assert r.noisy_unclipped_fraction == pytest.approx(0.5, abs=1e-4)
    np.testing.assert_allclose(r.sum, np.sum(contributions, axis=0)[:-1], atol=1e-4)


def test_dp_fedavg_bad_arguments():
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.DPFedAvg(noise_multiplier=-0.5)
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.DPFedAvg(noise_multiplier=float("nan"))
    with pytest.raises(ValueError, match="clip_norm"):
        privacy.DPFedAvg(noise_multiplier=1.0, clip_norm=0.0)
    with pytest.raises(ValueError, match="target_unclipped_quantile"):
        privacy.DPFedAvg(noise_multiplier=1.0, adaptive=True, target_unclipped_quantile=1.5)
    with pytest.raises(ValueError, match="clipping"):
        privacy.DPFedAvg(noise_multiplier=1.0, adaptive=True, noise="local")
    with pytest.raises(ValueError, match="noise"):
        privacy.DPFedAvg(noise_multiplier=1.0, noise="everywhere")
    dp = privacy.DPFedAvg(noise_multiplier=1.0)
    with pytest.raises(ValueError, match="updates"):
        dp.aggregate(np.zeros(5))
    with pytest.raises(ValueError, match="updates"):
        dp.aggregate(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="update"):
        dp.aggregate(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="num_clients"):
        dp.client_contribution(np.zeros(3), num_clients=2**70)
    # Adaptive clipping with too little count noise for z: named.
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        privacy.DPFedAvg(noise_multiplier=1.0, adaptive=True).aggregate(np.ones((10, 3)))


def test_sensitivities_and_rules_on_a_secure_sum():
    assert privacy.l2_sensitivity("sum", 2.0) == 2.0
    assert privacy.l2_sensitivity("mean", 2.0, num_clients=4) == 0.5
    assert privacy.rule_sensitivity("fedavg", 1.0, 10) == pytest.approx(0.1)
    assert privacy.rule_sensitivity("krum", 1.0, 10, num_byzantine=2) == 2.0
    assert privacy.rule_sensitivity("median", 1.0, 10) == pytest.approx(2 * math.sqrt(2))
    with pytest.raises(ValueError, match="num_byzantine"):
        privacy.rule_sensitivity("bulyan", 1.0, 10, num_byzantine=2)
    with pytest.raises(ValueError, match="bound"):
        privacy.l2_sensitivity("nonsense", 1.0)
    privacy.require_sum_based_rule("fedavg")
    for rule in ("krum", "median", "trimmed_mean", "bulyan"):
        with pytest.raises(ValueError, match=rule):
            privacy.require_sum_based_rule(rule)


# ---- secure aggregation --------------------------------------------------------------------


def _inputs(n, d, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("stage", privacy.STAGES)
def test_secure_sum_is_exact_under_dropouts(stage):
    x = _inputs(8, 300)
    out = privacy.secure_sum(list(x), threshold=5, dropouts={stage: [1, 6, 7]}, seed=4)
    kept = [i for i in range(8) if stage in ("consistency_check", "unmasking") or i not in (1, 6, 7)]
    assert out.included == kept
    assert sorted(out.dropouts) == [(1, stage), (6, stage), (7, stage)]
    np.testing.assert_allclose(out.sum, x[kept].astype(np.float64).sum(0), atol=out.max_error + 1e-5)
    np.testing.assert_allclose(out.mean(), out.sum / len(kept), rtol=1e-6)


def test_secure_sum_secagg_plus_none_inputs_and_determinism():
    x = _inputs(12, 50, 1)
    inputs = list(x)
    inputs[3] = None
    a = privacy.secure_sum(inputs, threshold=4, degree=6, graph_seed=2, modulus_bits=40, seed=9)
    assert 3 not in a.included and (3, "advertise_keys") in a.dropouts
    np.testing.assert_allclose(a.sum, np.delete(x, 3, axis=0).astype(np.float64).sum(0), atol=1e-4)
    b = privacy.secure_sum(inputs, threshold=4, degree=6, graph_seed=2, modulus_bits=40, seed=9)
    np.testing.assert_array_equal(a.sum, b.sum)


def test_too_few_survivors_is_a_secure_aggregation_error():
    x = _inputs(6, 10)
    with pytest.raises(SecureAggregationError, match="nothing was revealed"):
        privacy.secure_sum(list(x), threshold=4, dropouts={"masked_input": [0, 1, 2]})
    with pytest.raises(SecureAggregationError, match="threshold 4"):
        privacy.secure_sum(list(x), threshold=4, dropouts={"unmasking": [0, 1, 2]})
    assert issubclass(SecureAggregationError, MeshrlError)


def test_secure_sum_bad_input():
    x = _inputs(5, 10)
    with pytest.raises(ValueError, match="threshold"):
        privacy.secure_sum(list(x), threshold=6)
    with pytest.raises(ValueError, match="threshold"):
        privacy.secure_sum(list(x), threshold=2**70)
    with pytest.raises(TypeError, match="threshold"):
        privacy.secure_sum(list(x), threshold=2.5)
    bad = list(x)
    bad[2] = np.array([np.nan] * 10, dtype=np.float32)
    with pytest.raises(ValueError, match="input 2 holds NaN"):
        privacy.secure_sum(bad, threshold=3)
    bad[2] = np.zeros(9, dtype=np.float32)
    with pytest.raises(ValueError, match="input 2 has length 9"):
        privacy.secure_sum(bad, threshold=3)
    bad[2] = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"inputs\[2\]"):
        privacy.secure_sum(bad, threshold=3)
    with pytest.raises(ValueError, match="inputs"):
        privacy.secure_sum(np.zeros((2, 3, 4)), threshold=2)
    with pytest.raises(ValueError, match="no client input"):
        privacy.secure_sum([None, None], threshold=2)
    with pytest.raises(ValueError, match="dropouts"):
        privacy.secure_sum(list(x), threshold=3, dropouts={"lunch": [1]})
    with pytest.raises(ValueError, match="dropouts"):
        privacy.secure_sum(list(x), threshold=3, dropouts={"share_keys": [10**20]})
    with pytest.raises(ValueError, match="modulus_bits"):
        privacy.secure_sum(list(x), threshold=3, modulus_bits=100)
    with pytest.raises(ValueError, match="clip_range"):
        privacy.secure_sum(list(x), threshold=3, clip_range=float("nan"))
    with pytest.raises(ValueError, match="degree"):
        privacy.secure_sum(list(x), threshold=3, degree=3)
    with pytest.raises(ValueError, match="seed"):
        privacy.secure_sum(list(x), threshold=3, seed=-1)
