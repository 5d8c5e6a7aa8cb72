"""Prints the accountant fixtures of rust/privacy/tests/accountant.rs from the reference
implementations: Google's dp-accounting (RdpAccountant, default orders) and Opacus's RDP
analysis (loaded from its file, so torch is not needed).

    python3 -m venv /tmp/dpref
    /tmp/dpref/bin/pip install "dp-accounting==0.6.*"
    /tmp/dpref/bin/pip install --no-deps "opacus==1.6.*"
    /tmp/dpref/bin/python rust/privacy/tests/reference/accountant_fixtures.py
"""

import importlib.util
import logging
import pathlib
import sys

import dp_accounting
from dp_accounting import dp_event, rdp
from dp_accounting.rdp import rdp_privacy_accountant as rpa

logging.disable(logging.WARNING)  # dp-accounting warns about orders whose series does not converge

site = pathlib.Path(dp_accounting.__file__).parent.parent
spec = importlib.util.spec_from_file_location("opacus_rdp", site / "opacus/accountants/analysis/rdp.py")
opacus_rdp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(opacus_rdp)
import importlib.metadata as md

print(f"// dp-accounting {md.version('dp-accounting')}, opacus {md.version('opacus')}")

POINTS = [
    (1.1, 0.1, 100, 1e-5),
    (1.0, 0.01, 1000, 1e-5),
    (0.8, 0.05, 500, 1e-6),
    (2.0, 0.2, 50, 1e-5),
    (0.5, 0.001, 10000, 1e-5),
    (1.5, 1.0, 10, 1e-5),
    (4.0, 0.5, 200, 1e-3),
    (0.7, 0.3, 3, 1e-2),
    (1.0, 0.02, 5000, 1e-6),
    (10.0, 0.9, 1000, 1e-5),
]
print("// (sigma, q, steps, delta, dp-accounting epsilon, its order, opacus epsilon)")
for sigma, q, steps, delta in POINTS:
    acc = rdp.RdpAccountant()
    acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    alphas = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    r = opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=alphas)
    o_eps, _ = opacus_rdp.get_privacy_spent(orders=alphas, rdp=r, delta=delta)
    print(f"({sigma!r}, {q!r}, {steps}, {delta!r}, {float(eps)!r}, {float(order)!r}, {float(o_eps)!r}),")

print("// per-step RDP of sigma = 1.1, q = 0.1 at single orders (dp-accounting)")
for a in [1.5, 2.0, 2.5, 3.6, 7.0, 10.9, 32.0, 256.0, 1024.0]:
    v = rpa._compute_rdp_poisson_subsampled_gaussian(0.1, 1.1, [a])[0]
    print(f"({a!r}, {float(v)!r}),")

print("// (target epsilon, delta, q, steps, sigma): dp-accounting calibrate_dp_mechanism, tol 1e-7")
for target, delta, q, steps in [(6.6207694822, 1e-5, 0.1, 100), (1.0, 1e-5, 0.01, 1000), (8.0, 1e-6, 0.05, 500), (3.0, 1e-5, 1.0, 10)]:
    sigma = dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant,
        lambda s: dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(s)), steps),
        target,
        delta,
        tol=1e-7,
    )
    print(f"({target!r}, {delta!r}, {q!r}, {steps}, {float(sigma)!r}),")
