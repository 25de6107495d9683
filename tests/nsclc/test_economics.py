"""Health economics: QALYs against closed forms, utility decrements, treatment cost."""

from __future__ import annotations

import math

import pytest
import torch

from oncobench.nsclc import economics as e


def test_constant_utility_for_one_year_undiscounted_is_the_utility():
    u = 0.653
    # 4 x 365.25 = 1461 whole days are exactly 4 years
    days = 1461
    util = torch.full((1, days), u, dtype=torch.float64)
    alive = torch.ones((1, days), dtype=torch.bool)
    assert e.qalys(util, alive, discount_rate_per_year=0.0).item() == pytest.approx(4 * u, rel=1e-14)
    # one year: 365 whole days and a quarter of the 366th
    alive = torch.zeros((1, 366), dtype=torch.float64)
    alive[0, :365] = 1.0
    alive[0, 365] = 0.25
    util = torch.full((1, 366), u, dtype=torch.float64)
    assert e.qalys(util, alive, discount_rate_per_year=0.0).item() == pytest.approx(u, rel=1e-14)


@pytest.mark.parametrize("rate", [0.035, 0.015, 0.10])
@pytest.mark.parametrize("days", [1, 100, 3653])
def test_discounting_matches_the_closed_form_integral(rate, days):
    # integral_0^T u e^{-rho t} dt = u (1 - e^{-rho T}) / rho, rho = ln(1 + r), T in years
    u = 0.7
    rho = math.log1p(rate)
    big_t = days / e.DAYS_PER_YEAR
    expected = u * (1.0 - math.exp(-rho * big_t)) / rho
    util = torch.full((2, days), u, dtype=torch.float64)
    alive = torch.ones((2, days), dtype=torch.bool)
    got = e.qalys(util, alive, discount_rate_per_year=rate)
    torch.testing.assert_close(got, torch.full((2,), expected, dtype=torch.float64), rtol=1e-10, atol=0.0)


def test_discount_factor_after_one_year_is_nice_annual_rate():
    w = e.daily_discount_weight(2 * 36525, 0.035)
    # the mean discount factor of the first day of year 100 vs day 0: (1.035)^-100
    ratio = (w[36525] / w[0]).item()
    assert ratio == pytest.approx(1.035**-100, rel=1e-9)


def test_death_stops_accrual():
    util = torch.full((2, 730), 0.5, dtype=torch.float64)
    alive = torch.ones((2, 730), dtype=torch.bool)
    alive[1, 365:] = False
    q = e.qalys(util, alive, discount_rate_per_year=0.0)
    assert q[1].item() == pytest.approx(0.5 * 365 / e.DAYS_PER_YEAR, rel=1e-14)
    assert q[0].item() == pytest.approx(0.5 * 730 / e.DAYS_PER_YEAR, rel=1e-14)


def test_daily_utility_states_and_decrements():
    T, F = True, False
    prog = torch.tensor([F, F, T, T, F, F, F, F])
    resp = torch.tensor([F, T, F, T, F, F, F, T])
    neut = torch.tensor([F, F, F, F, T, F, T, T])
    fn = torch.tensor([F, F, F, F, F, T, T, F])
    other = torch.tensor([F, F, F, F, F, F, T, T])
    u = e.daily_utility(prog, resp, neut, fn, other)
    expected = [
        0.653,  # stable
        0.673,  # responding
        0.473,  # progressed
        0.473,  # progression outranks response
        0.653 - 0.09,  # neutropenia
        0.653 - 0.09,  # febrile neutropenia
        0.653 - 0.09 - 0.07,  # FN with neutropenia counts once, plus another grade 3-4 AE
        0.673 - 0.09 - 0.07,
    ]
    torch.testing.assert_close(u, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)
    # fractions of a day scale the decrement
    no, zero = torch.tensor([F]), torch.tensor([0.0])
    half = e.daily_utility(no, no, torch.tensor([0.5]), zero, zero)
    assert half.item() == pytest.approx(0.653 - 0.045, abs=1e-15)
    assert e.UTILITY_RESPONDING - e.UTILITY_STABLE == pytest.approx(0.02)  # Nafees "response +0.02"
    assert e.UTILITY_STABLE - e.UTILITY_PROGRESSED == pytest.approx(0.18)


def test_treatment_cost_sum():
    mg = torch.tensor([[200.0, 0.0, 750.0], [400.0, 2400.0, 0.0]], dtype=torch.float64)
    price = torch.tensor([26.30, 5770.0 / 2400.0, 0.02], dtype=torch.float64)
    iv = torch.tensor([1, 2])
    rt = torch.tensor([30, 0])
    cost = e.treatment_cost_gbp(mg, price, iv, rt, cost_per_iv_visit=300.0, cost_per_rt_fraction=150.0)
    expected = [200 * 26.30 + 750 * 0.02 + 300.0 + 30 * 150.0, 400 * 26.30 + 5770.0 + 2 * 300.0]
    torch.testing.assert_close(cost, torch.tensor(expected, dtype=torch.float64), rtol=1e-14, atol=0.0)
    # a 200 mg pembrolizumab cycle at list price is GBP 5,260 (brief §6)
    assert 200 * e.LIST_PRICE_GBP_PER_MG["pembrolizumab"] == pytest.approx(5260.0)
    default = e.treatment_cost_gbp(mg[:1] * 0, price, torch.tensor([1]), torch.tensor([1]))
    assert default.item() == pytest.approx(e.COST_PER_IV_VISIT_GBP + e.COST_PER_RT_FRACTION_GBP)
