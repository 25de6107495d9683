"""Run a virtual trial: screen, enrol, randomise, treat and follow simulated patients.

For each replicate the runner screens freshly drawn patients of the spec's population against
its eligibility expression, enrols the first ``sample_size`` eligible ones (uniformly over the
accrual period), randomises them to arms by the allocation ratio (permuted so the arm sizes are
exact), resolves investigator's-choice regimens, marks crossover patients, and simulates every
patient to the last data cut-off with the NSCLC model. Replicates use disjoint patients, so
they are independent trials of the same design.

Enrolment after a prior regimen (second line, consolidation) first simulates the prior regimen
from diagnosis: patients enrol at their progression on it (``at: progression``) or at its
completion without progression (``at: completion_without_progression``), carrying their tumour
burden and their acquired resistance into the trial.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pandas as pd
import torch

from oncobench import rng
from oncobench.nsclc import population as popmod
from oncobench.nsclc import recist
from oncobench.nsclc.latent import Latent, ModelStream, draw_latent
from oncobench.nsclc.params import ModelParameters
from oncobench.nsclc.regimens import RegimenLibrary
from oncobench.nsclc.simulator import DAYS_PER_MONTH, Assignment, Outcome, Schedule, Start, build_tables, simulate
from oncobench.trials import spec as specmod

RESPONSE_NAMES = {int(r): r.name for r in recist.Response}
SCREEN_BATCH = 20000
PRIOR_LINE_DAYS = 548  # 18 months on the prior line at most before enrolment at its progression


def _merge(a: popmod.Population, b: popmod.Population, take_b: torch.Tensor) -> popmod.Population:
    out = {}
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        mask = take_b.reshape(-1, *([1] * (x.dim() - 1)))
        out[f.name] = torch.where(mask, y, x)
    return popmod.Population(**out)


def draw_trial_population(spec: specmod.TrialSpec, seed: int, patient_id: torch.Tensor) -> popmod.Population:
    """Patients of the spec's population (region mix and stages), before eligibility."""
    stages = {s: (popmod.STAGE_WEIGHTS[s] if s in spec.population.stage else 0.0) for s in popmod.STAGES}
    weights = spec.population.region_weights
    regions = list(weights)
    pop = popmod.draw_population(seed, patient_id, region=regions[0], stage_weights=stages)
    if len(regions) == 1:
        return pop
    u = rng.uniform(rng.patient_keys(seed, ModelStream.ENROLMENT, patient_id), 1)
    cum = np.cumsum([weights[r] for r in regions])
    for i, region in enumerate(regions[1:], start=1):
        other = popmod.draw_population(seed, patient_id, region=region, stage_weights=stages)
        pop = _merge(pop, other, (u >= float(cum[i - 1])) & (u < float(cum[i])))
    return pop


def _trial_seed(seed: int, spec: specmod.TrialSpec) -> int:
    return (seed * 1_000_003 + zlib.crc32(spec.name.encode())) % (2**62)


def screen(spec: specmod.TrialSpec, seed: int, n: int, device: torch.device) -> popmod.Population:
    """The first ``n`` eligible patients of the spec's population, in patient-id order."""
    kept: list[popmod.Population] = []
    found = 0
    start = 0
    while found < n:
        pid = torch.arange(start, start + SCREEN_BATCH, dtype=torch.int64, device=device)
        pop = draw_trial_population(spec, seed, pid)
        ok = torch.as_tensor(specmod.eligible(spec, popmod.to_frame(pop)), device=device)
        idx = torch.nonzero(ok).squeeze(1)[: n - found]
        kept.append(pop.take(idx))
        found += len(idx)
        start += SCREEN_BATCH
        if start > 400 * SCREEN_BATCH and found == 0:
            raise ValueError(f"trial {spec.name}: no patient of 8,000,000 screened meets its eligibility")
    out = {f.name: torch.cat([getattr(p, f.name) for p in kept]) for f in dataclasses.fields(kept[0])}
    return popmod.Population(**out)


def _allocate(spec: specmod.TrialSpec, n: int, seed: int, replicate: int) -> np.ndarray:
    ratios = np.array([a.ratio for a in spec.arms], dtype=float)
    counts = np.floor(n * ratios / ratios.sum()).astype(int)
    counts[np.argmax(ratios)] += n - counts.sum()
    arms = np.repeat(np.arange(len(spec.arms)), counts)
    gen = np.random.default_rng([seed, replicate, 1])
    return gen.permutation(arms)


def _choose(weights: dict[str, float], u: np.ndarray) -> np.ndarray:
    names = list(weights)
    cdf = np.cumsum([weights[k] for k in names])
    cdf /= cdf[-1]
    return np.array(names, dtype=object)[np.minimum(np.searchsorted(cdf, u, side="right"), len(names) - 1)]


def regimen_indices(library: RegimenLibrary, names: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Library rows of an array of regimen names (one lookup per distinct name)."""
    uniq, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return library.indices(uniq.tolist()).to(device)[torch.as_tensor(inverse, device=device)]


def _prior_start(
    spec: specmod.TrialSpec,
    pop: popmod.Population,
    lat: Latent,
    params: ModelParameters,
    library: RegimenLibrary,
    seed: int,
    tables,
) -> tuple[torch.Tensor, Start]:
    """Which screened patients reach enrolment after the prior regimen, and their state then."""
    n = len(pop)
    dev = pop.patient_id.device
    prior = library.index(spec.line.after_regimen)
    bsc = library.index("best_supportive_care")
    # enrolment at progression: follow the prior line up to PRIOR_LINE_DAYS (later progressors
    # are not enrolled); at completion: to the end of the regimen's finite phases plus 4 weeks
    days = PRIOR_LINE_DAYS
    if spec.line.at == "completion_without_progression":
        lengths = (library.cycle_days[prior] * library.cycles[prior].clamp(min=0)).sum()
        days = int(lengths.item()) + 28
    scans = tuple(range(42, days, 42))
    out = simulate(
        pop,
        lat,
        Assignment(torch.full((n,), prior, dtype=torch.int64, device=dev), torch.full((n,), bsc, dtype=torch.int64, device=dev)),
        Schedule(days=days, scan_days=scans),
        params,
        library,
        seed=seed,
        replicate=1,
        tables=tables,
        until_study_progression=spec.line.at == "progression",
    )
    if spec.line.at == "progression":
        ok = out.pfs_event & (out.os_days > out.pfs_days)
        start = Start(
            log_volume=out.progression_log_volume,
            class_exposure_days=out.progression_class_exposure,
            line=2,
            progressed=True,
            doomed_volume=out.progression_doomed_volume,
        )
    else:
        ok = ~out.pfs_event & ~out.os_event
        start = Start(
            log_volume=out.final_log_volume,
            class_exposure_days=out.final_class_exposure,
            line=2,
            doomed_volume=out.final_doomed_volume,
            clonogen_depth=out.final_clonogen_depth,
        )
    return ok, start


def run_trial(
    spec: specmod.TrialSpec,
    params: ModelParameters,
    library: RegimenLibrary,
    *,
    seed: int,
    replicates: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Per-patient outcomes of ``replicates`` runs of ``spec`` (docs/nsclc-contracts.md frame).

    Extra columns: regimen (str), crossover (bool), qalys, cost_gbp, worst_grade.
    """
    dev = torch.device(device)
    tseed = _trial_seed(seed, spec)
    n = spec.sample_size
    tables = build_tables(params, library, dev)
    names = np.array(library.names, dtype=object)
    cutoff_days = max(c for _, c in spec.data_cutoff_months) * DAYS_PER_MONTH
    horizon = int(math.ceil(cutoff_days)) + 1
    scans = tuple(int(d) for d in specmod.scan_days(spec, horizon))

    # screen enough patients for every replicate at once (prior-line trials lose some on the way)
    need = n * replicates
    pop = screen(spec, tseed, need if spec.line.is_first else int(need * 1.8) + 50, dev)
    lat = draw_latent(tseed, pop, params)
    start = None
    if not spec.line.is_first:
        ok, start_all = _prior_start(spec, pop, lat, params, library, tseed, tables)
        idx = torch.nonzero(ok).squeeze(1)
        if len(idx) < need:
            raise ValueError(f"trial {spec.name}: only {len(idx)} of {len(pop)} screened patients reach enrolment; need {need}")
        idx = idx[:need]
        pop, lat = pop.take(idx), lat.take(idx)
        start = start_all.take(idx)
    else:
        pop, lat = pop.take(torch.arange(need, device=dev)), lat.take(torch.arange(need, device=dev))

    arm_idx = np.concatenate([_allocate(spec, n, tseed, r) for r in range(replicates)])
    replicate = np.repeat(np.arange(replicates), n)
    u = rng.uniform_pair(rng.patient_keys(tseed, ModelStream.ALLOCATION, pop.patient_id), 7)
    u_choice, u_cross = (x.cpu().numpy() for x in u)
    regimen = np.empty(need, dtype=object)
    for a, arm in enumerate(spec.arms):
        rows = arm_idx == a
        regimen[rows] = _choose(arm.regimen_weights, u_choice[rows])
    cross = np.full(need, -1, dtype=np.int64)
    for c in spec.crossover:
        a = [arm.name for arm in spec.arms].index(c.from_arm)
        rows = (arm_idx == a) & (u_cross < c.probability)
        cross[rows] = library.index(c.to_regimen)
    reg_t = regimen_indices(library, regimen, dev)
    out = simulate(
        pop,
        lat,
        Assignment(reg_t, torch.as_tensor(cross, device=dev), start_line=1 if spec.line.is_first else 2),
        Schedule(days=horizon, scan_days=scans),
        params,
        library,
        seed=tseed,
        tables=tables,
        start=start,
    )

    u_e, u_d = (x.cpu().numpy() for x in rng.uniform_pair(rng.patient_keys(tseed, ModelStream.ENROLMENT, pop.patient_id), 2))
    enrol = u_e * spec.accrual_months * DAYS_PER_MONTH
    frame = _frame(out, replicate, spec, arm_idx, regimen, cross >= 0, pop, enrol)
    if spec.dropout_per_year > 0:
        dropout = -np.log(u_d) / (spec.dropout_per_year / 365.25)
        for ep in ("pfs", "os"):
            lost = frame[f"{ep}_days"].to_numpy() > dropout
            frame.loc[lost, f"{ep}_event"] = False
            frame.loc[lost, f"{ep}_days"] = dropout[lost]
    return frame


def _frame(out: Outcome, replicate, spec, arm_idx, regimen, crossed, pop, enrol) -> pd.DataFrame:
    best = out.best_response.cpu().numpy().astype(int)
    g3_day = out.grade3_ae_day.cpu().numpy()
    return pd.DataFrame(
        {
            "replicate": replicate.astype(np.int64),
            "arm": np.array([a.name for a in spec.arms], dtype=object)[arm_idx],
            "patient_id": pop.patient_id.cpu().numpy(),
            "enrol_day": enrol,
            "pfs_days": out.pfs_days.cpu().numpy(),
            "pfs_event": out.pfs_event.cpu().numpy(),
            "os_days": out.os_days.cpu().numpy(),
            "os_event": out.os_event.cpu().numpy(),
            "best_response": [RESPONSE_NAMES[b] for b in best],
            "grade3_ae": out.grade3_ae_study.cpu().numpy(),
            "grade3_ae_day": np.where(g3_day >= 0, g3_day, np.nan).astype(float),
            "regimen": regimen.astype(str),
            "crossover": crossed,
            "qalys": out.qalys.cpu().numpy(),
            "cost_gbp": out.cost_gbp.cpu().numpy(),
            "worst_grade": out.worst_grade.cpu().numpy().astype(np.int64),
        }
    )
