"""Health economics of a simulated patient: daily utility, discounted QALYs and treatment cost.

Utilities are Nafees 2008 (HQLO 6:84; UK standard gamble, n=100, metastatic NSCLC) as
tabulated by Paracha 2018 (HQLO review, Table 4), brief §6. Discounting follows NICE
(3.5% a year for costs and effects). Costs are in GBP.

Time convention: day ``d`` of a (rows, days) tensor covers ``[d, d + 1)`` days from the
start; a year is ``DAYS_PER_YEAR`` = 365.25 days.
"""

from __future__ import annotations

import math

import torch

DAYS_PER_YEAR = 365.25

# Nafees 2008 health-state utilities (brief §6).
UTILITY_STABLE = 0.653  # stable disease, no toxicity
UTILITY_RESPONDING = 0.673  # responding (= stable + 0.02)
UTILITY_PROGRESSED = 0.473  # progressive disease (stable - 0.18, SE 0.022)

# Nafees 2008 grade 3-4 adverse-event decrements (brief §6; rounded, SE in brackets).
DECREMENT_NEUTROPENIA = 0.09  # [0.015]
DECREMENT_FEBRILE_NEUTROPENIA = 0.09  # [0.016]
DECREMENT_FATIGUE = 0.07  # [0.018]
DECREMENT_NAUSEA_VOMITING = 0.05  # [0.016]
DECREMENT_DIARRHOEA = 0.05  # [0.016]
DECREMENT_HAIR_LOSS = 0.04  # [0.015]
DECREMENT_RASH = 0.03  # [0.012]
# Any other grade 3-4 AE takes the largest non-haematological Nafees decrement, fatigue
# (the commonest such event on platinum doublets, CheckMate 026: fatigue 5%, brief §3.3):
# a conservative single figure (**assumption**).
DECREMENT_OTHER_AE_G34 = DECREMENT_FATIGUE

# NICE reference case: 3.5% a year.
NICE_DISCOUNT_RATE = 0.035

# Administration costs (GBP), quoted from NHS National Schedule of Costs 2018/19 as inflated
# in PMC11523951 (pancreatic-cancer CEA, unit-cost table): SB13Z "deliver complex parenteral
# chemotherapy at first attendance" 307.58; radiotherapy outpatient attendance (service
# code 800) 142.88. Using SB13Z for every IV visit (also immunotherapy, simple chemotherapy
# SB12Z) and an outpatient attendance per RT fraction are **unconfirmed** simplifications.
COST_PER_IV_VISIT_GBP = 307.58
COST_PER_RT_FRACTION_GBP = 142.88

# UK list prices per mg (brief §6): pembrolizumab GBP 2,630 per 100 mg vial (BNF Mar 2021,
# NICE TA709); osimertinib GBP 5,770 per 30 x 80 mg tablets (BNF Mar 2019, NICE TA621).
# Other drugs: **unconfirmed**, not listed.
LIST_PRICE_GBP_PER_MG = {
    "pembrolizumab": 2630.0 / 100.0,
    "osimertinib": 5770.0 / (30 * 80.0),
}


def _flag(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64)


def daily_utility(
    progressed: torch.Tensor,
    responding: torch.Tensor,
    neutropenia_g34: torch.Tensor,
    febrile_neutropenia: torch.Tensor,
    other_ae_g34: torch.Tensor,
) -> torch.Tensor:
    """Utility of each patient-day (float64, broadcast shape of the inputs).

    Health state: progressed -> 0.473; else responding -> 0.673; else stable 0.653. AE
    decrements are subtracted on every day the event lasts: the flags are per day and the
    duration is whatever the toxicity model flags (grade 3-4 neutropenia while ANC < 1.0e9/L,
    the febrile episode, the other event's grade >= 3 spell), not a fixed duration per event.
    Febrile neutropenia is neutropenia with fever and Nafees valued the two as alternative
    states, so the larger of the two decrements applies, not their sum; the decrement of any
    other grade 3-4 AE adds. Flags may be bool or float in [0, 1] (fraction of the day).

    Args:
        progressed, responding: bool health state of the day (progression takes precedence).
        neutropenia_g34, febrile_neutropenia, other_ae_g34: bool or fraction of the day.
    """
    states = [UTILITY_STABLE, UTILITY_RESPONDING, UTILITY_PROGRESSED]
    levels = torch.tensor(states, dtype=torch.float64, device=progressed.device)
    state = torch.where(progressed.to(torch.bool), 2, responding.to(torch.bool).to(torch.int64))
    base = levels[state]
    haematological = torch.maximum(
        DECREMENT_NEUTROPENIA * _flag(neutropenia_g34),
        DECREMENT_FEBRILE_NEUTROPENIA * _flag(febrile_neutropenia),
    )
    return base - haematological - DECREMENT_OTHER_AE_G34 * _flag(other_ae_g34)


def daily_discount_weight(
    days: int, discount_rate_per_year: float = NICE_DISCOUNT_RATE, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Discounted length in years of each day ``d`` in ``0..days-1``.

    ``w_d = integral over [d, d+1) days of (1 + r)^(-t) dt`` with t in years, i.e. continuous
    discounting at ``rho = ln(1 + r)`` so that a year-1 outcome is worth ``1 / (1 + r)`` as
    in NICE's annual rate. ``sum_d w_d`` over T days is ``(1 - e^{-rho T}) / rho``; with
    ``r = 0`` every day weighs ``1 / DAYS_PER_YEAR``.
    """
    d = torch.arange(days + 1, dtype=torch.float64, device=device) / DAYS_PER_YEAR
    rho = math.log1p(discount_rate_per_year)
    if rho == 0.0:
        return torch.full((days,), 1.0 / DAYS_PER_YEAR, dtype=torch.float64, device=device)
    # -expm1(-rho dt) avoids cancellation for a one-day step
    return torch.exp(-rho * d[:-1]) * (-torch.expm1(-rho * (d[1:] - d[:-1]))) / rho


def qalys(
    utility_per_day: torch.Tensor, alive: torch.Tensor, discount_rate_per_year: float = NICE_DISCOUNT_RATE
) -> torch.Tensor:
    """Discounted QALYs per row: ``sum_d u_d alive_d w_d`` (``w`` from :func:`daily_discount_weight`).

    Args:
        utility_per_day: (rows, days) utility of each day.
        alive: (rows, days) bool, or the fraction of the day alive.
        discount_rate_per_year: annual rate (NICE 0.035; 0 = undiscounted).

    Returns:
        (rows,) float64 QALYs.
    """
    w = daily_discount_weight(utility_per_day.shape[-1], discount_rate_per_year, utility_per_day.device)
    return (utility_per_day.to(torch.float64) * alive.to(torch.float64) * w).sum(dim=-1)


def treatment_cost_gbp(
    mg_given: torch.Tensor,
    price_gbp_per_mg: torch.Tensor,
    iv_visits: torch.Tensor,
    rt_fractions: torch.Tensor,
    *,
    cost_per_iv_visit: float = COST_PER_IV_VISIT_GBP,
    cost_per_rt_fraction: float = COST_PER_RT_FRACTION_GBP,
) -> torch.Tensor:
    """Undiscounted treatment cost per row (GBP): drug acquisition plus administration.

    ``sum_k mg_given[:, k] price[k] + iv_visits cost_per_iv_visit + rt_fractions cost_per_rt_fraction``.
    Drug cost is per mg given (no vial wastage). To discount costs incurred over time, weigh
    each day's cost by ``DAYS_PER_YEAR * daily_discount_weight(...)`` (the day's mean
    discount factor).

    Args:
        mg_given: (rows, D) total mg of each drug.
        price_gbp_per_mg: (D,) price of each drug.
        iv_visits: (rows,) intravenous administration visits.
        rt_fractions: (rows,) radiotherapy fractions delivered.
    """
    drug = (mg_given.to(torch.float64) * price_gbp_per_mg.to(torch.float64)).sum(dim=-1)
    administration = cost_per_iv_visit * iv_visits.to(torch.float64)
    return drug + administration + cost_per_rt_fraction * rt_fractions.to(torch.float64)
