"""The geng2017 model against independent answers: analytic Gompertz, scipy's solve_ivp, the LQ
surviving fraction, first-order chemo decay, and the literature's cohort distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from oncobench import engine
from oncobench.models import geng2017 as g

N = 20_000


@pytest.fixture(scope="module")
def cohort():
    return g.draw_cohort(20171, torch.arange(N))


def test_stage_and_type_frequencies_match_the_literature(cohort):
    weights = np.array(g.STAGE_WEIGHTS) / sum(g.STAGE_WEIGHTS)
    counts = np.bincount(cohort.stage.numpy(), minlength=5)
    assert stats.chisquare(counts, weights * N).pvalue > 1e-3
    types = np.bincount(cohort.patient_type.numpy(), minlength=4)[1:]
    assert stats.chisquare(types).pvalue > 1e-3


def test_parameter_constraints(cohort):
    assert bool((cohort.radio_alpha_per_gy > 0).all() and (cohort.growth_rate_per_day > 0).all())
    assert torch.allclose(cohort.radio_beta_per_gy2, cohort.radio_alpha_per_gy / 10.0)
    d0 = cohort.initial_diameter_cm
    assert bool((d0 >= 0.3).all() and (d0 <= 13.0).all())
    stage_i = cohort.stage == 0
    assert bool((d0[stage_i] <= 5.0).all())
    assert torch.allclose(cohort.initial_volume_cm3, math.pi / 6 * d0**3)


def test_type_shifts(cohort):
    # type 3 has beta_c shifted by 10% of its mean (0.0028 = 4 SD of beta_c); compare group means
    bc = cohort.chemo_beta_c
    t = cohort.patient_type
    se = g.BETA_C_SD * math.sqrt(1 / (t == 3).sum().item() + 1 / (t == 2).sum().item())
    diff = (bc[t == 3].mean() - bc[t == 2].mean()).item()
    assert abs(diff - g.TYPE_SHIFT * g.BETA_C_MEAN) < 5 * se


def test_alpha_rho_truncated_bivariate_normal(cohort):
    """Compare with an independent numpy rejection sampler of the same distribution."""
    gen = np.random.default_rng(0)
    cov = [[g.ALPHA_SD**2, g.ALPHA_RHO_CORR * g.ALPHA_SD * g.RHO_SD], [g.ALPHA_RHO_CORR * g.ALPHA_SD * g.RHO_SD, g.RHO_SD**2]]
    draws = gen.multivariate_normal([g.ALPHA_MEAN, g.RHO_MEAN], cov, size=4 * N)
    draws = draws[(draws > 0).all(1)][:N]
    t = cohort.patient_type.numpy()
    alpha = cohort.radio_alpha_per_gy.numpy()[t != 1]  # type 1 is shifted
    rho = cohort.growth_rate_per_day.numpy()
    assert stats.ks_2samp(alpha, draws[: len(alpha), 0]).pvalue > 1e-3
    assert stats.ks_2samp(rho, draws[:, 1]).pvalue > 1e-3


def test_prefix_stable_cohort():
    a = g.draw_cohort(5, torch.arange(1000))
    b = g.draw_cohort(5, torch.arange(1001))
    for name in a.__dataclass_fields__:
        assert torch.equal(getattr(a, name), getattr(b, name)[:1000]), name


def _untreated(cohort, days, compat):
    n = len(cohort)
    plan = engine.Plan(torch.zeros((n, days), dtype=torch.bool), torch.zeros((n, days), dtype=torch.bool))
    return engine.simulate_course(cohort, seed=1, days=days, compat=compat, treatment=plan, noise=False)


def test_untreated_growth_is_the_analytic_gompertz_solution(cohort):
    sub = cohort.take(torch.arange(500))
    course = _untreated(sub, 730, "none")
    t = torch.arange(730, dtype=torch.float64)
    exact = g.gompertz_volume(sub.initial_volume_cm3[:, None], sub.growth_rate_per_day[:, None], sub.carrying_capacity_cm3[:, None], t)
    alive = t[None, :] < course.stop_day[:, None]
    rel = ((course.volume_cm3 - exact).abs() / exact)[alive]
    assert rel.max().item() < 1e-9


def test_untreated_growth_matches_solve_ivp():
    sub = g.draw_cohort(3, torch.arange(5))
    course = _untreated(sub, 365, "none")
    for i in range(5):
        rho, k, v0 = (float(x[i]) for x in (sub.growth_rate_per_day, sub.carrying_capacity_cm3, sub.initial_volume_cm3))
        sol = integrate.solve_ivp(lambda _, v: rho * v * np.log(k / v), (0, 364), [v0], t_eval=np.arange(365), rtol=1e-10, atol=1e-12)
        stop = int(course.stop_day[i])
        np.testing.assert_allclose(course.volume_cm3[i, :stop].numpy(), sol.y[0][:stop], rtol=1e-6)


def _one_patient(**overrides):
    base = g.draw_cohort(1, torch.arange(1))
    fields = {k: getattr(base, k).clone() for k in base.__dataclass_fields__}
    for k, v in overrides.items():
        fields[k] = torch.tensor([v], dtype=fields[k].dtype)
    return g.Geng2017Cohort(**fields)


def test_linear_quadratic_surviving_fraction_and_chemo_log_kill():
    p = _one_patient(growth_rate_per_day=1e-12, radio_alpha_per_gy=0.3, radio_beta_per_gy2=0.03, chemo_beta_c=0.028,
                     initial_volume_cm3=10.0)
    days = 4
    radio = torch.zeros((1, days), dtype=torch.bool)
    radio[0, 0] = True
    chemo = torch.zeros((1, days), dtype=torch.bool)
    c = engine.simulate_course(p, seed=1, days=days, compat="none", treatment=engine.Plan(chemo, radio), noise=False)
    k = p.carrying_capacity_cm3.item()
    no_growth = lambda v: k * math.exp(math.log(v / k) * math.exp(-1e-12))  # noqa: E731
    lq = math.exp(-(0.3 * 2 + 0.03 * 4))  # S = exp(-alpha d - beta d^2), d = 2 Gy
    assert c.volume_cm3[0, 1].item() == pytest.approx(no_growth(10.0) * lq, rel=1e-12)
    # one chemo dose: concentration halves each day, kill exp(-beta_c C)
    chemo[0, 0] = True
    radio[0, 0] = False
    c = engine.simulate_course(p, seed=1, days=days, compat="none", treatment=engine.Plan(chemo, radio), noise=False)
    np.testing.assert_allclose(c.chemo_concentration[0].numpy(), 5.0 * 0.5 ** np.arange(days), rtol=1e-15)
    v = 10.0
    for t in range(1, days):
        v = no_growth(v) * math.exp(-0.028 * 5.0 * 0.5 ** (t - 1))
        assert c.volume_cm3[0, t].item() == pytest.approx(v, rel=1e-12)


def test_reference_update_is_the_literature_formula():
    p = _one_patient(initial_volume_cm3=20.0)
    radio = torch.zeros((1, 3), dtype=torch.bool)
    radio[0, 0] = True
    c = engine.simulate_course(p, seed=1, days=3, compat="reference", treatment=engine.Plan(torch.zeros_like(radio), radio), noise=False)
    rho, a, b, k = (float(x[0]) for x in (p.growth_rate_per_day, p.radio_alpha_per_gy, p.radio_beta_per_gy2, p.carrying_capacity_cm3))
    expected = 20.0 * (1 + rho * math.log(k / 20.0) - (a * 2 + b * 4))
    if expected > 0:
        assert c.volume_cm3[0, 1].item() == pytest.approx(expected, rel=1e-12)


def test_default_mode_never_goes_negative_where_the_reference_does():
    # 2.4 alpha > 1: one 2 Gy fraction drives the literature's factor negative (ref 3.5)
    p = _one_patient(radio_alpha_per_gy=0.6, radio_beta_per_gy2=0.06, initial_volume_cm3=50.0, growth_rate_per_day=1e-12)
    radio = torch.zeros((1, 3), dtype=torch.bool)
    radio[0, 0] = True
    plan = engine.Plan(torch.zeros_like(radio), radio)
    ref = engine.simulate_course(p, seed=1, days=3, compat="reference", treatment=plan, noise=False)
    new = engine.simulate_course(p, seed=1, days=3, compat="none", treatment=plan, noise=False)
    assert ref.status.item() == g.STATUS_RECOVERED and ref.stop_day.item() == 1  # numerical "recovery"
    assert new.status.item() == g.STATUS_ALIVE
    assert new.volume_cm3[0, 1].item() == pytest.approx(50.0 * math.exp(-(0.6 * 2 + 0.06 * 4)), rel=1e-3)


def test_recovery_means_fewer_than_one_cell():
    v = torch.tensor([0.9 / g.CELLS_PER_CM3, 1.1 / g.CELLS_PER_CM3, 2000.0], dtype=torch.float64)
    out, died, rec = g.stop_rules(v, torch.ones(3, dtype=torch.float64), "none")
    assert rec.tolist() == [True, False, False] and died.tolist() == [False, False, True]
    assert out[0].item() == 0.0 and out[2].item() == pytest.approx(g.DEATH_VOLUME_CM3)


def test_diameter_volume_roundtrip():
    d = torch.tensor([0.3, 1.0, 6.5, 13.0], dtype=torch.float64)
    assert torch.allclose(g.diameter_cm(g.volume_cm3(d)), d, rtol=1e-14)
    assert g.DEATH_VOLUME_CM3 == pytest.approx(1150.35, abs=0.01)
