"""Tumour regression during chemoradiation: the clearance rate of cells radiotherapy has killed.

The linear-quadratic model (brief §1.2) counts clonogenic survival: a cell a fraction has
lethally damaged no longer divides, but it dies and is cleared over the following days to weeks
(mitotic death, then resorption), so the tumour on a scan shrinks far more slowly than its
living part. The simulator keeps that dead-but-visible part as a doomed volume cleared at
``radiotherapy.doomed_clearance_per_day`` (``oncobench.nsclc.simulator``); scans see living plus
doomed, the death hazard and new lesions the living part. Drug kill has no such compartment: the
Claret form's kill rates are fitted to measured tumour size, so they already describe what scans
see.

The rate is fitted to an imaging study, not to a trial: Wald et al. (J Thorac Oncol
2017;12:1779-87, PMID 28843360) contoured the primary tumour on the kilovoltage cone-beam CT of
52 patients with stage III NSCLC on definitive chemoradiotherapy. Median gross tumour volumes were
77.1, 48.3, 42.5 and 29.9 cm3 at fractions 1, 11, 21 and the last. :func:`fit_doomed_clearance`
simulates the shipped ``chemoradiation`` regimen (60 Gy in 30 fractions with weekly
carboplatin-paclitaxel) in a stage III cohort and chooses the rate whose median volumes at those
fractions, relative to fraction 1, match the published ratios (least squares on log ratios).
Without the compartment (an infinite rate) the simulated median volume at the last fraction was
3.7% of the first against 38.8% published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize

from oncobench.nsclc import population as popmod
from oncobench.nsclc.drugs import DRUG_NAMES
from oncobench.nsclc.latent import draw_latent, sld_to_log_volume
from oncobench.nsclc.params import ModelParameters, with_values
from oncobench.nsclc.regimens import RegimenLibrary
from oncobench.nsclc.simulator import Assignment, Schedule, build_tables, simulate

KEY = "radiotherapy.doomed_clearance_per_day"
REGIMEN = "chemoradiation"
# Wald 2017 (above): fraction number -> median primary GTV, cm3 (the last fraction of 60 Gy / 2 Gy is 30)
WALD_2017_MEDIAN_GTV_CM3: dict[int, float] = {1: 77.1, 11: 48.3, 21: 42.5, 30: 29.9}
STAGE_III = ("IIIA", "IIIB", "IIIC")
RATE_BOUNDS = (1e-3, 1.0)  # per day: half-lives of 0.7 to 700 days


@dataclass(frozen=True)
class RegressionFit:
    """The fitted rate, the simulated and published ratios to fraction 1, and the fit's cost."""

    rate_per_day: float
    fractions: tuple[int, ...]
    simulated: tuple[float, ...]
    published: tuple[float, ...]
    cost: float
    evaluations: int

    def lines(self) -> list[str]:
        pairs = ", ".join(
            f"fraction {f}: {s:.3f} vs {p:.3f}" for f, s, p in zip(self.fractions, self.simulated, self.published)
        )
        return [
            f"{KEY} = {self.rate_per_day:.5g} (half-life {math.log(2) / self.rate_per_day:.1f} days), "
            f"{self.evaluations} evaluations, cost {self.cost:.4g}",
            f"median volume / fraction 1, simulated vs Wald 2017: {pairs}",
        ]


def published_ratios() -> dict[int, float]:
    """Wald 2017's median volume at each later fraction over the one at fraction 1."""
    first = WALD_2017_MEDIAN_GTV_CM3[1]
    return {f: v / first for f, v in WALD_2017_MEDIAN_GTV_CM3.items() if f != 1}


def fraction_days(library: RegimenLibrary) -> list[int]:
    """Simulation days (day 0 = the regimen's day 1) on which ``chemoradiation`` gives a fraction."""
    table = library.dose[library.index(REGIMEN)]  # (phases, days, drugs)
    rt = table[0, :, DRUG_NAMES.index("thoracic_rt")]
    return [int(d) for d in torch.nonzero(rt > 0).squeeze(1).tolist()]


def stage_iii_cohort(seed: int, n: int, device: torch.device) -> popmod.Population:
    """``n`` western stage III patients with ECOG 0-1 (definitive chemoradiation candidates)."""
    stages = {s: (popmod.STAGE_WEIGHTS[s] if s in STAGE_III else 0.0) for s in popmod.STAGES}
    pid = torch.arange(2 * n + 100, dtype=torch.int64, device=device)
    pop = popmod.draw_population(seed, pid, region="western", stage_weights=stages)
    keep = torch.nonzero(pop.ecog <= 1).squeeze(1)[:n]
    if len(keep) < n:
        raise ValueError(f"stage III cohort: only {len(keep)} of {len(pid)} drawn patients have ECOG 0-1; need {n}")
    return pop.take(keep)


def volume_ratios(params: ModelParameters, library: RegimenLibrary, pop: popmod.Population, *, seed: int) -> dict[int, float]:
    """Median visible tumour volume at the published fractions over the median at fraction 1,
    among patients alive then, on the ``chemoradiation`` regimen (the scan of each fraction's
    morning, before its dose)."""
    days = fraction_days(library)
    last = max(WALD_2017_MEDIAN_GTV_CM3)
    if len(days) < last:
        raise ValueError(f"regimen '{REGIMEN}' gives {len(days)} radiotherapy fractions in its first phase; "
                         f"the regression fit compares fractions 1 to {last} (60 Gy in 30 x 2 Gy)")
    wanted = {f: days[f - 1] for f in WALD_2017_MEDIAN_GTV_CM3}
    n = len(pop)
    dev = pop.patient_id.device
    lat = draw_latent(seed, pop, params)
    reg = torch.full((n,), library.index(REGIMEN), dtype=torch.int64, device=dev)
    bsc = torch.full((n,), library.index("best_supportive_care"), dtype=torch.int64, device=dev)
    out = simulate(
        pop, lat, Assignment(reg, bsc), Schedule(days=max(wanted.values()) + 1, scan_days=(), record=True),
        params, library, seed=seed, tables=build_tables(params, library, dev),
    )
    if out.record is None:
        raise RuntimeError("simulate returned no daily record although Schedule.record was set")
    log_v = sld_to_log_volume(out.record.sld_true_mm)  # NaN after death

    def median_volume(day: int) -> float:
        return float(np.exp(np.nanmedian(log_v[day].cpu().numpy())))

    first = median_volume(wanted[1])
    return {f: median_volume(d) / first for f, d in wanted.items() if f != 1}


def fit_doomed_clearance(
    params: ModelParameters, library: RegimenLibrary, *, seed: int, n: int = 4000, device: torch.device | str = "cpu"
) -> RegressionFit:
    """The clearance rate that best reproduces Wald 2017's median volume ratios (bounded scalar
    minimisation over the log rate; every evaluation simulates the same cohort and streams)."""
    pop = stage_iii_cohort(seed, n, torch.device(device))
    target = published_ratios()
    fractions = tuple(target)
    count = 0

    def cost(log_rate: float) -> float:
        nonlocal count
        count += 1
        sim = volume_ratios(with_values(params, {KEY: math.exp(log_rate)}), library, pop, seed=seed)
        return float(sum((math.log(sim[f]) - math.log(target[f])) ** 2 for f in fractions))

    lo, hi = (math.log(b) for b in RATE_BOUNDS)
    sol = optimize.minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    rate = float(math.exp(sol.x))
    sim = volume_ratios(with_values(params, {KEY: rate}), library, pop, seed=seed)
    return RegressionFit(
        rate_per_day=rate,
        fractions=fractions,
        simulated=tuple(sim[f] for f in fractions),
        published=tuple(target[f] for f in fractions),
        cost=float(sol.fun),
        evaluations=count,
    )
