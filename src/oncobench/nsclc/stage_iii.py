"""Locally advanced (stage III) disease after chemoradiation: fitted to RTOG 0617's 60 Gy arm.

Every calibration trial enrols stage IV disease only, so nothing in ``oncobench calibrate`` sees
the stage III path. There, every tumour's radiosensitivity was drawn around Geng 2017's median
alpha (0.04 Gy^-1, log-SD 0.5), and 60 Gy never controlled a tumour for long: 4,000 stage III
patients on the library's ``chemoradiation`` lived a median 17.6 months with 3.1% alive at 5
years, against 28.7 months and 32.1% in RTOG 0617's 60 Gy arm (brief §2, RT outcome anchors:
Bradley et al., Lancet Oncol 2015;16:187-99 and J Clin Oncol 2020;38:706-14).

Two changes make durable control possible. The simulator now lets radiotherapy take a tumour
below the volume floor and eradicates it with the Poisson tumour-control probability
(``oncobench.nsclc.simulator``); and a share of tumours, ``radiotherapy.radiosensitive_share``,
has the brief's other alpha anchor as its median, 0.305 Gy^-1 from the tumour-control fit of
2,701 early-stage patients (Clin Cancer Res 2017;23:5469), instead of Geng's 0.04.
:func:`fit_stage_iii` fits that share to the arm's overall survival, its median and its 5-year
rate, from the start of chemoradiation.

A second free number, a stage III growth factor (growth as a fraction of the metastatic rate),
was tried and dropped: fitted jointly, it went to 1.84 (stage III growing faster than stage IV)
with 61% radiosensitive; bounded between early disease and stage IV, it sat on the stage IV
bound. Stage III grows as stage IV does.

The cohort is :func:`oncobench.nsclc.regression.stage_iii_cohort` (western, ECOG 0-1, stage
IIIA-IIIC). RTOG 0617 ran from 2007 to 2011, before immunotherapy: at progression a patient gets
``docetaxel`` (the era's second line) instead of the pathway's chemo-immunotherapy, with
the pathway's probability of receiving a next line. Differences from the trial, kept: no
consolidation chemotherapy (the trial gave two cycles of carboplatin-paclitaxel after
radiotherapy, the library regimen gives none), no radiation toxicity deaths, and a controlled
tumour's patient dies only at the low burden hazard (no competing causes of death).

PACIFIC stays held out: it is reported by ``oncobench calibration-report``, not fitted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize

from oncobench.nsclc.latent import draw_latent
from oncobench.nsclc.params import ModelParameters, with_values
from oncobench.nsclc.regimens import RegimenLibrary
from oncobench.nsclc.regression import REGIMEN, stage_iii_cohort
from oncobench.nsclc.simulator import Assignment, Schedule, build_tables, simulate
from oncobench.trials.analysis import km_curve, km_median

KEY = "radiotherapy.radiosensitive_share"
# RTOG 0617, 60 Gy arm (brief §2): median overall survival and 5-year overall survival
RTOG_0617_OS_MEDIAN_MONTHS = 28.7
RTOG_0617_OS_5Y = 0.321
SECOND_LINE = "docetaxel"
DAYS_PER_MONTH = 30.4375
FOLLOW_UP_DAYS = int(round(60 * DAYS_PER_MONTH)) + 1  # to the 5-year landmark
# follow-up scans every 3 months for 2 years, then every 6 months (the usual post-CRT schedule)
SCAN_DAYS = (*range(91, 731, 91), *range(912, FOLLOW_UP_DAYS, 182))
BOUNDS = (0.0, 0.9)


@dataclass(frozen=True)
class StageIIIFit:
    """The fitted share, the simulated survival at it, and the fit's cost."""

    share: float
    simulated: dict[str, float]
    cost: float
    evaluations: int

    def lines(self) -> list[str]:
        s = self.simulated
        return [
            f"{KEY} = {self.share:.5g}; {self.evaluations} evaluations, cost {self.cost:.4g}",
            f"RTOG 0617 60 Gy arm, simulated vs published: OS median {s['os_median_months']:.2f} vs "
            f"{RTOG_0617_OS_MEDIAN_MONTHS} months, 5-year OS {s['os_5y']:.3f} vs {RTOG_0617_OS_5Y}",
        ]


def survival(params: ModelParameters, library: RegimenLibrary, pop, *, seed: int) -> dict[str, float]:
    """Kaplan-Meier median overall survival (months; inf when not reached) and survival at 60
    months of ``pop`` on ``chemoradiation`` from its first day, followed for five years without
    loss to follow-up."""
    n = len(pop)
    dev = pop.patient_id.device
    lat = draw_latent(seed, pop, params)
    reg = torch.full((n,), library.index(REGIMEN), dtype=torch.int64, device=dev)
    nxt = torch.full((n,), library.index(SECOND_LINE), dtype=torch.int64, device=dev)
    out = simulate(
        pop, lat, Assignment(reg, nxt), Schedule(days=FOLLOW_UP_DAYS, scan_days=SCAN_DAYS),
        params, library, seed=seed, tables=build_tables(params, library, dev),
    )
    months = out.os_days.cpu().numpy() / DAYS_PER_MONTH
    event = out.os_event.cpu().numpy()
    median = km_median(months, event)
    times, surv = km_curve(months, event)
    return {
        "os_median_months": math.inf if math.isnan(median) else median,
        "os_5y": float(surv[np.searchsorted(times, 60.0, side="right") - 1]),
    }


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def fit_stage_iii(
    params: ModelParameters, library: RegimenLibrary, *, seed: int, n: int = 4000, device: torch.device | str = "cpu"
) -> StageIIIFit:
    """The share (bounded scalar search over :data:`BOUNDS`) that minimises the squared log ratio
    of the median to RTOG 0617's plus the squared logit difference of the 5-year rate; every
    evaluation simulates the same cohort and random streams."""
    pop = stage_iii_cohort(seed, n, torch.device(device))
    count = 0

    def cost(share: float) -> float:
        nonlocal count
        count += 1
        sim = survival(with_values(params, {KEY: share}), library, pop, seed=seed)
        return (math.log(sim["os_median_months"] / RTOG_0617_OS_MEDIAN_MONTHS)) ** 2 + (
            _logit(sim["os_5y"]) - _logit(RTOG_0617_OS_5Y)
        ) ** 2

    sol = optimize.minimize_scalar(cost, bounds=BOUNDS, method="bounded", options={"xatol": 2e-3})
    share = float(sol.x)
    return StageIIIFit(
        share=share,
        simulated=survival(with_values(params, {KEY: share}), library, pop, seed=seed),
        cost=float(sol.fun),
        evaluations=count,
    )
