"""Checks of the NSCLC patient model: analytic natural history and causal consistency.

The checks follow /work/shared/notes/inverse-verification.md §4. Each is a function of the
model (parameters and regimen library) and a population with its latent parameters, so a test
can hand it a planted defect (a parameter copy, a latent with the targeting removed). Gated rows
have ``passed`` True or False; reported rows carry ``passed = None``.

1. **Natural history** (:func:`natural_history_checks`): untreated and noise-free, the burden
   grows exponentially in log volume, so the diameter sum is ``SLD0 exp(g t / 3)`` on recorded
   day ``t`` (the record holds the state at the start of each day: day 0 is the baseline).
2. **Dose response with common random numbers** (:func:`dose_response_checks`): the same
   patients, seed and replicate under one regimen with every dose scaled by ``f``. Burden and
   neutrophil nadir are compared where the arms' courses coincide (see that function for what
   is exactly true and why), ``f = 0`` against best supportive care, and Page's trend test on
   the measured diameter sum at the first scan.
3. **Targeted therapy** (:func:`targeted_checks`): no effect without the target (exact), an
   effect with it (a share, gated against chance).
4. **Combination toxicity** (:func:`combination_toxicity_checks`): a combination's grade >= 3
   rate is not below either part's beyond paired sampling error.

:func:`causal_checks` runs 1-4; the verify stage (:mod:`oncobench.inverse.nsclc`) runs it on
``CHECK_PATIENTS`` fresh patients, and asks what the observations identify by neural posterior
estimation there. The science takes tensors and returns checks; files are read and written by
the CLI.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from scipy import stats

from oncobench.inverse.checks import Check
from oncobench.nsclc import population as popmod
from oncobench.nsclc.drugs import DRUGS
from oncobench.nsclc.latent import Latent
from oncobench.nsclc.model import NsclcModel
from oncobench.nsclc.regimens import RegimenLibrary
from oncobench.nsclc.simulator import Assignment, Outcome, Record, Schedule, simulate

BSC = "best_supportive_care"
# Dose multipliers of the dose-response arms, in increasing order (0 = the regimen's schedule
# with nothing given).
DOSE_FACTORS = (0.0, 0.5, 1.0, 1.5)
DOSE_RESPONSE_REGIMENS = ("carboplatin_pemetrexed", "docetaxel")
# (combination, its parts) of the toxicity check: KEYNOTE-189 arms and pembrolizumab alone.
COMBINATIONS = (("pembrolizumab_carboplatin_pemetrexed", ("carboplatin_pemetrexed", "pembrolizumab")),)
# (targeted regimen, the genotype it needs) of the null-effect check.
TARGETED = (("osimertinib", "egfr"), ("alectinib", "alk"))
# Days simulated for the causal checks: four 21-day cycles, two 6-weekly scans and a margin.
CAUSAL_DAYS = 120
# Day of the targeted positive control: 12 weeks on treatment, the second 6-weekly scan.
CONTROL_DAY = 84
# Fresh patients of the causal checks (ids from CHECK_ID_OFFSET), disjoint from any release
# cohort (ids 0 .. N-1). TRAIN_ID_OFFSET stays reserved: oncobench.inverse.nsclc keeps its own
# simulation ids clear of both.
CHECK_ID_OFFSET = 2 * 10**12
TRAIN_ID_OFFSET = 10**12
CHECK_PATIENTS = 1000
# Exact comparisons (float64 rounding only): relative tolerance.
EXACT_RTOL = 1e-9
# Gates that are tests against chance: this many standard errors.
SE_GATE = 3.0
# Page's L test p-value gate.
PAGE_ALPHA = 0.01


# --------------------------------------------------------------------------- simulation
def scaled_library(library: RegimenLibrary, regimen: str, factor: float) -> RegimenLibrary:
    """``library`` with every dose of ``regimen`` multiplied by ``factor`` (others unchanged)."""
    dose = library.dose.clone()
    dose[library.index(regimen)] *= factor
    return dataclasses.replace(library, dose=dose)


def check_schedule(model: NsclcModel, days: int = CAUSAL_DAYS) -> Schedule:
    """A recorded schedule of ``days`` days (at least past the control day and the first scan)
    with the model's scan interval."""
    days = max(days, CONTROL_DAY + 1, model.scan_every_days + 1)
    return Schedule(days=days, scan_days=tuple(range(model.scan_every_days, days, model.scan_every_days)), record=True)


def _simulate(
    model: NsclcModel, pop: popmod.Population, lat: Latent, regimen: str, schedule: Schedule,
    library: RegimenLibrary | None = None,
) -> Outcome:
    """Every row under ``regimen`` (pathway afterwards), replicate 0 of the model's seed."""
    lib = model.library if library is None else library
    dev = pop.patient_id.device
    reg = torch.full((len(pop),), lib.index(regimen), dtype=torch.int64, device=dev)
    return simulate(
        pop, lat, Assignment(reg, torch.full_like(reg, -1)), schedule, model.params, lib, seed=model.seed, replicate=0
    )


def _cpu(rec: Record | None) -> Record:
    if rec is None:
        raise ValueError("simulation was not recorded (Schedule.record = False)")
    return Record(**{f.name: getattr(rec, f.name).cpu() for f in dataclasses.fields(rec)})


def _above(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a exceeds b beyond float64 rounding (relative ``EXACT_RTOL``)."""
    return a > b + EXACT_RTOL * b.abs()


def _differ(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() > EXACT_RTOL * torch.maximum(a.abs(), b.abs())


def _counted(violations: int, compared: int) -> float:
    """A violation count, NaN (a failed gate) when nothing was compared: an empty check passes nothing."""
    return float(violations) if compared > 0 else float("nan")


def _first_line_days(rec: Record) -> torch.Tensor:
    """(days, rows): alive and still on the study line (recorded line 0)."""
    return rec.alive & (rec.line == 0)


# --------------------------------------------------------------------------- 1. natural history
def natural_history_checks(
    model: NsclcModel, pop: popmod.Population, lat: Latent, *, days: int | None = None
) -> list[Check]:
    """Untreated, noise-free burden against the analytic exponential solution.

    The log volume grows by ``g`` per day and the diameter sum is proportional to V^(1/3)
    (``latent.log_volume_to_sld``), so SLD = SLD0 exp(g n / 3) after n daily steps. The record
    holds the state at the start of each day (day t after t steps; day 0 is the baseline scan).
    Compared on every alive day of ``days`` (default: the model's horizon).

    Gated: maximum relative error <= 1e-9.
    """
    schedule = Schedule(days=days or model.horizon_days, scan_days=model.scan_days, record=True)
    rec = _cpu(_simulate(model, pop, lat, BSC, schedule).record)
    steps = torch.arange(0, schedule.days, dtype=torch.float64).unsqueeze(1)
    exact = lat.baseline_sld_mm.cpu() * torch.exp(lat.growth_rate_per_day.cpu() * steps / 3.0)
    rel = ((rec.sld_true_mm - exact).abs() / exact)[rec.alive]
    worst = float(rel.max()) if rel.numel() else float("nan")
    subject = f"{BSC}, noise-free sld_true_mm vs SLD0 exp(g t / 3), {schedule.days} days"
    return [
        Check("natural_history", subject, "max_relative_error", worst, EXACT_RTOL, "<="),
        Check("natural_history", subject, "patient_days_compared", float(rel.numel())),
    ]


# --------------------------------------------------------------------------- 2. dose response
def _common_course_end(records: list[Record], factors: tuple[float, ...]) -> torch.Tensor:
    """(rows,) first day on which a patient's arms stop sharing one course: the dosed arms'
    recorded drugs differ (a hold, a stop, a discontinuation, a death) or any arm has left the
    study line (progression). ``days`` where that never happens."""
    days, n = records[0].alive.shape
    dosed = [r.drugs_given for r, f in zip(records, factors) if f > 0]
    diverged = torch.zeros((days, n), dtype=torch.bool)
    if dosed:
        bits = torch.stack(dosed)
        diverged |= (bits != bits[:1]).any(0)
    for r in records:
        diverged |= r.line > 0
    day = torch.arange(days).unsqueeze(1).expand(days, n)
    return torch.where(diverged, day, torch.full_like(day, days)).amin(0)


def _resistance_days(model: NsclcModel, regimen: str, f_lo: float, f_hi: float) -> int | None:
    """Days on which the burden order of two dose levels is guaranteed under identical courses.

    Kill on day t is, per class, potency x sensitivity x f x c(t) x exp(-r n_f(t)), with c the
    exposure at f = 1 and n_f(t) the days before t on which the class was active (exposure
    above the simulator's activity threshold); n_f can only grow with f. The higher dose kills
    at least as much while r (n_hi - n_lo) <= log(f_hi / f_lo), and n_hi - n_lo <= t, so every
    day t < floor(log(f_hi / f_lo) / r_max) is guaranteed. None = no limit (f_lo = 0 kills
    nothing, or the regimen's classes acquire no resistance).
    """
    lib = model.library
    classes = {DRUGS[d].drug_class for d, m in zip(lib.drugs, lib.drug_mask(regimen).tolist()) if m}
    r_max = max((model.params.drug_class(c)["resistance_per_day"] for c in classes), default=0.0)
    if f_lo <= 0 or r_max <= 0:
        return None
    return int(math.floor(math.log(f_hi / f_lo) / r_max))


def _nadir(rec: Record, mask: torch.Tensor) -> torch.Tensor:
    """(rows,) smallest ANC over the days in ``mask`` (inf where none)."""
    return torch.where(mask, rec.anc_1e9_per_l, torch.full_like(rec.anc_1e9_per_l, math.inf)).amin(0)


def dose_response_checks(
    model: NsclcModel,
    pop: popmod.Population,
    lat: Latent,
    regimen: str,
    *,
    factors: tuple[float, ...] = DOSE_FACTORS,
    days: int = CAUSAL_DAYS,
) -> list[Check]:
    """Causal consistency of ``regimen`` over dose levels ``factors`` with common random numbers.

    Every arm is the same patients, seed and replicate; arms differ only in the dose multiplier
    (:func:`scaled_library`). What is exactly true in this simulator, and therefore gated (zero
    violations at relative tolerance 1e-9, for each pair of neighbouring dose levels):

    * **Burden** on the days the arms share one course (:func:`_common_course_end`; a hold at a
      cycle start, a stop, a discontinuation after an adverse event, a death or a progression
      makes the recorded drugs or line differ, and from then on a lower dose can be given more
      often or for longer). Within it every dose falls on the same day with amounts in ratio
      f_hi / f_lo, exposure is linear in the dose, and the daily log-volume step g - kill is
      non-increasing in f for as long as the resistance clock allows (:func:`_resistance_days`);
      the floor clamp is monotone, so the order carries from day to day. When the regimen
      reduces doses after a febrile neutropenia, patients with one in any arm are left out (the
      reduction is not in the record and can invert the dose order).
    * **Neutrophil nadir**, the smallest ANC over the same days: non-increasing in f. Within a
      shared course the higher dose has the larger Friberg drug effect on every day, so the
      exact solution is pushed lower; a violation points at the integration or the effect.
    * **f = 0 is natural history**: a regimen with nothing given kills nothing and causes no
      toxicity, so alive status and sld_true_mm equal best supportive care's until the first
      progression, when the pathway sends the two arms to different next lines.
    * **Page's L trend test** on the measured diameter sum at the first scan (:func:`_page_checks`).

    Reported only: burden and nadir violations over every day both arms are alive (toxicity
    makes later courses differ, so these need not be zero).
    """
    if list(factors) != sorted(factors) or len(factors) < 2:
        raise ValueError(f"factors: {factors}; expected at least two increasing dose multipliers")
    schedule = check_schedule(model, days)
    lib = model.library
    outs = [_simulate(model, pop, lat, regimen, schedule, scaled_library(lib, regimen, f)) for f in factors]
    recs = [_cpu(o.record) for o in outs]
    day = torch.arange(schedule.days).unsqueeze(1)
    shared = day < _common_course_end(recs, factors).unsqueeze(0)
    if bool((lib.fn_dose_factor[lib.index(regimen)] < 1).any()):
        shared &= ~torch.stack([o.febrile_neutropenia.cpu() for o in outs]).any(0).unsqueeze(0)

    check = "causal_dose_response"
    out: list[Check] = []
    for lo in range(len(factors) - 1):
        a, b = recs[lo], recs[lo + 1]
        pair = f"{regimen} f={factors[lo + 1]:g} vs f={factors[lo]:g}"
        both = a.alive & b.alive
        limit = _resistance_days(model, regimen, factors[lo], factors[lo + 1])
        window = shared & both & (day < (limit if limit is not None else schedule.days))
        higher = _above(b.sld_true_mm, a.sld_true_mm)
        subject = f"{pair}: burden, shared course" + ("" if limit is None else f", days < {limit}")
        n = int(window.sum())
        out += [
            Check(check, subject, "violations", _counted(int((higher & window).sum()), n), 0.0, "<="),
            Check(check, subject, "patient_days_compared", float(n)),
            Check(check, f"{pair}: burden, every day both alive", "violations", float((higher & both).sum())),
        ]
        mask = shared & both
        seen = mask.any(0)
        deeper = _above(_nadir(b, mask), _nadir(a, mask)) & seen
        subject = f"{pair}: neutrophil nadir, shared course"
        out += [
            Check(check, subject, "violations", _counted(int(deeper.sum()), int(seen.sum())), 0.0, "<="),
            Check(check, subject, "patients_compared", float(seen.sum())),
        ]
        deeper = _above(_nadir(b, both), _nadir(a, both)) & both.any(0)
        out.append(Check(check, f"{pair}: neutrophil nadir, every day both alive", "violations", float(deeper.sum())))

    if factors[0] == 0.0:
        out += _null_dose_checks(recs[0], _cpu(_simulate(model, pop, lat, BSC, schedule).record), regimen)
    out += _page_checks(recs, factors, regimen, scan_day=schedule.scan_days[0])
    return out


def _null_dose_checks(zero: Record, bsc: Record, regimen: str) -> list[Check]:
    """The zero-dose arm against best supportive care, day by day until either leaves the
    study line; dead days count, so deaths must coincide."""
    before = torch.cumsum(((zero.line > 0) | (bsc.line > 0)).to(torch.int64), 0) == 0
    differ = (zero.alive != bsc.alive) | (zero.alive & bsc.alive & _differ(zero.sld_true_mm, bsc.sld_true_mm))
    n = int((before & (zero.alive | bsc.alive)).sum())
    mism = _counted(int((differ & before).sum()), n)
    subject = f"{regimen} f=0 vs {BSC}: alive and sld_true_mm on the study line"
    return [
        Check("causal_null_dose", subject, "mismatched_patient_days", mism, 0.0, "<="),
        Check("causal_null_dose", subject, "patient_days_compared", float(n)),
    ]


def _page_checks(recs: list[Record], factors: tuple[float, ...], regimen: str, *, scan_day: int) -> list[Check]:
    """Page's L test on the measured SLD at ``scan_day``, columns ordered by decreasing dose.

    ``scipy.stats.page_trend_test`` takes the columns in order of increasing predicted mean; the
    prediction is more burden at a lower dose, so the highest dose comes first.
    """
    measured = torch.stack([r.sld_measured_mm[scan_day] for r in recs], dim=1).numpy()  # (rows, arms)
    complete = np.isfinite(measured).all(1)
    data = measured[complete][:, ::-1]
    order = ", ".join(f"{f:g}" for f in reversed(factors))
    subject = f"{regimen} measured SLD day {scan_day}, f = {order} (increasing burden predicted)"
    if data.shape[0] < 2 or data.shape[1] < 3:
        p, stat = float("nan"), float("nan")
    else:
        res = stats.page_trend_test(data)
        p, stat = float(res.pvalue), float(res.statistic)
    return [
        Check("page_trend", subject, "p_value", p, PAGE_ALPHA, "<="),
        Check("page_trend", subject, "L_statistic", stat),
        Check("page_trend", subject, "patients", float(data.shape[0])),
    ]


# --------------------------------------------------------------------------- 3. targeted therapy
def _target_present(pop: popmod.Population, target: str) -> torch.Tensor:
    if target == "egfr":
        return (pop.egfr != popmod.EGFR.index("wild_type")).cpu()
    if target == "alk":
        return pop.alk.bool().cpu()
    raise ValueError(f"target '{target}': expected 'egfr' or 'alk'")


def targeted_checks(
    model: NsclcModel, pop: popmod.Population, lat: Latent, *, days: int = CAUSAL_DAYS
) -> list[Check]:
    """Targeted therapy acts only where its target is.

    Gated: (a) patients without the target have exactly the burden of best supportive care on
    every day both arms are alive on the study line (the drug may still cause toxicity, even a
    treatment death, and after progression the arms move to different next lines); (b) EGFR-mutant
    patients under osimertinib have a lower true burden at day ``CONTROL_DAY`` than under best
    supportive care in a share above 1/2 + 3 binomial SEs (sqrt(1/4 / n), patients alive in both
    arms). Rows are independent, so each regimen is simulated once on the whole population.
    """
    schedule = check_schedule(model, days)
    bsc = _cpu(_simulate(model, pop, lat, BSC, schedule).record)
    out: list[Check] = []
    for regimen, target in TARGETED:
        rec = _cpu(_simulate(model, pop, lat, regimen, schedule).record)
        absent = ~_target_present(pop, target)
        mask = _first_line_days(rec) & _first_line_days(bsc) & absent.unsqueeze(0)
        mism = int((_differ(rec.sld_true_mm, bsc.sld_true_mm) & mask).sum())
        subject = f"{regimen} vs {BSC}, {target} absent: sld_true_mm on the study line"
        value = _counted(mism, int(mask.sum()))
        out.append(Check("targeted_null_effect", subject, "mismatched_patient_days", value, 0.0, "<="))
        out.append(Check("targeted_null_effect", subject, "patients", float(absent.sum())))
        if regimen == "osimertinib":
            present = _target_present(pop, target)
            both = rec.alive[CONTROL_DAY] & bsc.alive[CONTROL_DAY] & present
            n = int(both.sum())
            lower = rec.sld_true_mm[CONTROL_DAY][both] < bsc.sld_true_mm[CONTROL_DAY][both]
            share = float(lower.double().mean()) if n else float("nan")
            needed = 0.5 + SE_GATE * math.sqrt(0.25 / n) if n else float("nan")
            subject = f"{regimen} vs {BSC}, {target} mutant: burden lower at day {CONTROL_DAY}"
            out.append(Check("targeted_positive_control", subject, "share", share, needed, ">"))
            out.append(Check("targeted_positive_control", subject, "patients", float(n)))
    return out


# --------------------------------------------------------------------------- 4. combination toxicity
def combination_toxicity_checks(
    model: NsclcModel, pop: popmod.Population, lat: Latent, *, days: int = CAUSAL_DAYS
) -> list[Check]:
    """Share with any grade >= 3 adverse event on the study line: a combination vs each part.

    Same patients and random numbers in every arm, so the paired difference d = p_comb - p_part
    has the McNemar standard error sqrt(b + c) / n (b, c: discordant patients). Gated:
    d >= -3 SE. Not exact: the combination may end the study line (progression) at a different
    time than a part, which changes the time at risk.
    """
    schedule = dataclasses.replace(check_schedule(model, days), record=False)
    out: list[Check] = []
    for combo, parts in COMBINATIONS:
        g_combo = _simulate(model, pop, lat, combo, schedule).grade3_ae_study.cpu()
        n = len(g_combo)
        out.append(Check("combination_toxicity", combo, "grade3_rate", float(g_combo.double().mean())))
        for part in parts:
            g_part = _simulate(model, pop, lat, part, schedule).grade3_ae_study.cpu()
            b = int((g_combo & ~g_part).sum())
            c = int((~g_combo & g_part).sum())
            diff = (b - c) / n
            subject = f"{combo} vs {part}"
            out.append(Check("combination_toxicity", part, "grade3_rate", float(g_part.double().mean())))
            needed = -SE_GATE * math.sqrt(b + c) / n
            out.append(Check("combination_toxicity", subject, "paired_rate_difference", diff, needed, ">="))
    return out


# --------------------------------------------------------------------------- 1-4 together
def causal_checks(model: NsclcModel, pop: popmod.Population, lat: Latent) -> list[Check]:
    """The analytic and causal checks 1-4 on ``pop`` with latents ``lat``: natural history,
    dose response (with the null dose and Page's trend test) of every ``DOSE_RESPONSE_REGIMENS``
    entry, targeted therapy and combination toxicity."""
    checks = natural_history_checks(model, pop, lat)
    for regimen in DOSE_RESPONSE_REGIMENS:
        checks += dose_response_checks(model, pop, lat, regimen)
    checks += targeted_checks(model, pop, lat)
    checks += combination_toxicity_checks(model, pop, lat)
    return checks


__all__ = [
    "CHECK_ID_OFFSET", "CHECK_PATIENTS", "DOSE_FACTORS", "DOSE_RESPONSE_REGIMENS", "causal_checks", "check_schedule",
    "combination_toxicity_checks", "dose_response_checks", "natural_history_checks", "scaled_library",
    "targeted_checks",
]
