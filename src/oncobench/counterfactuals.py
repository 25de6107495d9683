"""Counterfactual ground truth: every patient under every regimen, and the literature's
one-step and tau-step counterfactual test sets, all with common random numbers.

The test sets branch from each patient's *own* factual history (the literature generator
reads the treatment window from another patient's rows; ref §3.1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from oncobench import engine
from oncobench.config import Regimen
from oncobench.models import geng2017 as g
from oncobench.schemas import STATUSES


def regimen_plan(regimen: Regimen, days: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (days,) chemo and radio dosing masks of one regimen."""
    chemo = torch.zeros(days, dtype=torch.bool, device=device)
    radio = torch.zeros(days, dtype=torch.bool, device=device)
    if regimen.chemo is not None:
        chemo[regimen.chemo.days(days)] = True
    if regimen.radio is not None:
        radio[regimen.radio.days(days)] = True
    return chemo, radio


def simulate_regimens(
    cohort: g.Geng2017Cohort,
    regimens: Sequence[Regimen],
    *,
    seed: int,
    days: int,
    compat: str,
    replicates: int = 1,
    noise: bool = True,
) -> tuple[engine.Course, torch.Tensor, torch.Tensor]:
    """Simulate each patient x regimen x replicate; rows are patient-major.

    Returns the course and, per row, the regimen index and the replicate. Replicate 0 uses
    the factual course's noise; every regimen of a patient and replicate shares its noise.
    """
    n, r = len(cohort), len(regimens)
    dev = cohort.patient_id.device
    patient_idx = torch.arange(n, device=dev).repeat_interleave(r * replicates)
    regimen_idx = torch.arange(r, device=dev).repeat_interleave(replicates).repeat(n)
    replicate = torch.arange(replicates, device=dev).repeat(n * r)
    plans = [regimen_plan(reg, days, dev) for reg in regimens]
    chemo = torch.stack([p[0] for p in plans])[regimen_idx]
    radio = torch.stack([p[1] for p in plans])[regimen_idx]
    course = engine.simulate_course(
        cohort.take(patient_idx), seed=seed, days=days, compat=compat,
        treatment=engine.Plan(chemo, radio), replicate=replicate, noise=noise,
    )
    return course, regimen_idx, replicate


def _status_names(codes: torch.Tensor) -> np.ndarray:
    return np.asarray(STATUSES, dtype=object)[codes.cpu().numpy().astype(np.int64)]


def regimen_outcomes(
    cohort: g.Geng2017Cohort,
    regimens: Sequence[Regimen],
    *,
    seed: int,
    days: int,
    compat: str,
    horizons: Sequence[int],
    replicates: int = 1,
) -> pd.DataFrame:
    """The :class:`oncobench.schemas.RegimenOutcome` table of a batch of patients.

    Per patient x regimen x replicate x horizon day h: volume and status on day h, chemo
    doses and radiation given on days before h (those that act on the day-h volume), and
    over the whole simulated course whether and when the patient died or recovered.
    """
    course, regimen_idx, replicate = simulate_regimens(
        cohort, regimens, seed=seed, days=days, compat=compat, replicates=replicates
    )
    rows = course.volume_cm3.shape[0]
    patient = cohort.patient_id.repeat_interleave(len(regimens) * replicates)
    died = course.status == g.STATUS_DEAD
    recovered = course.status == g.STATUS_RECOVERED
    stop = course.stop_day.to(torch.float64)
    nan = torch.full_like(stop, float("nan"))
    chemo_cum = torch.cumsum(course.chemo_given.to(torch.int64), 1)
    radio_cum = torch.cumsum(course.radio_given.to(torch.int64), 1)
    names = np.asarray([r.name for r in regimens], dtype=object)
    frames = []
    for h in horizons:
        status_h = torch.where(course.stop_day <= h, course.status, torch.zeros_like(course.status))
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": patient.cpu().numpy(),
                    "regimen": names[regimen_idx.cpu().numpy()],
                    "replicate": replicate.cpu().numpy().astype(np.int64),
                    "horizon_day": np.full(rows, h, dtype=np.int64),
                    "volume_cm3": course.volume_cm3[:, h].cpu().numpy(),
                    "status": _status_names(status_h),
                    "chemo_doses": chemo_cum[:, h - 1].cpu().numpy(),
                    "radio_dose_gy": (g.RADIO_DOSE_GY * radio_cum[:, h - 1]).to(torch.float64).cpu().numpy(),
                    "died": died.cpu().numpy(),
                    "death_day": torch.where(died, stop, nan).cpu().numpy(),
                    "recovered": recovered.cpu().numpy(),
                    "recovery_day": torch.where(recovered, stop, nan).cpu().numpy(),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["patient_id", "regimen", "replicate", "horizon_day"], kind="stable").reset_index(drop=True)


def _factual(cohort: g.Geng2017Cohort, *, seed: int, days: int, compat: str, gamma: float, window_days: int) -> engine.Course:
    return engine.simulate_course(
        cohort, seed=seed, days=days, compat=compat, treatment=engine.Policy(gamma=gamma, window_days=window_days)
    )


def _prev_conc(course: engine.Course) -> torch.Tensor:
    """(rows, days) chemo concentration of the day before (0 before day 0)."""
    c = course.chemo_concentration
    return torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], dim=1)


def one_step(
    cohort: g.Geng2017Cohort, *, seed: int, days: int, compat: str, gamma: float, window_days: int
) -> pd.DataFrame:
    """The :class:`oncobench.schemas.OneStep` set: every alive day t < days-1 of every patient
    under all four (chemo, radio) choices at t, with the factual noise of day t+1."""
    factual = _factual(cohort, seed=seed, days=days, compat=compat, gamma=gamma, window_days=window_days)
    t_all = torch.arange(days - 1, device=cohort.patient_id.device)
    alive = t_all.unsqueeze(0) < factual.stop_day.unsqueeze(1)  # alive on day t (not yet stopped)
    p_idx, t_idx = torch.nonzero(alive, as_tuple=True)
    combos = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool, device=p_idx.device)
    p_idx = p_idx.repeat_interleave(4)
    t_idx = t_idx.repeat_interleave(4)
    combo = combos.repeat(len(p_idx) // 4, 1)
    prev = _prev_conc(factual)
    v_start = factual.volume_cm3[p_idx, t_idx]
    c_prev = prev[p_idx, t_idx]
    sub = cohort.take(p_idx)
    v_next, s_next = engine.roll_forward(
        sub, seed=seed, compat=compat, start_day=t_idx, volume=v_start, conc_prev=c_prev,
        chemo_plan=combo[:, :1], radio_plan=combo[:, 1:],
    )
    is_factual = (combo[:, 0] == factual.chemo_given[p_idx, t_idx]) & (combo[:, 1] == factual.radio_given[p_idx, t_idx])
    return pd.DataFrame(
        {
            "patient_id": sub.patient_id.cpu().numpy(),
            "patient_type": sub.patient_type.cpu().numpy(),
            "volume_cm3": v_start.cpu().numpy(),
            "chemo_concentration_prev": c_prev.cpu().numpy(),
            "is_factual": is_factual.cpu().numpy(),
            "day": t_idx.cpu().numpy().astype(np.int64),
            "chemo": combo[:, 0].cpu().numpy(),
            "radio": combo[:, 1].cpu().numpy(),
            "volume_next_cm3": v_next[:, 0].cpu().numpy(),
            "status_next": _status_names(s_next[:, 0]),
        }
    )


def tau_sequences(tau_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The literature's sliding single-treatment sequences (CT ``sliding_treatment``):
    one chemo dose at step k, or one radio fraction at step k, nothing else; (2 tau_max, tau_max)."""
    eye = torch.eye(tau_max, dtype=torch.bool)
    zero = torch.zeros_like(eye)
    return torch.cat([eye, zero]), torch.cat([zero, eye])


def plan_strings(plan: torch.Tensor) -> np.ndarray:
    """Boolean (rows, tau) plans as '0'/'1' strings, formatted once per distinct plan."""
    tau = plan.shape[1]
    weights = (1 << torch.arange(tau - 1, -1, -1, dtype=torch.int64, device=plan.device))
    codes = (plan.to(torch.int64) * weights).sum(1).cpu().numpy()
    distinct, inverse = np.unique(codes, return_inverse=True)
    return np.array([format(int(c), f"0{tau}b") for c in distinct], dtype=object)[inverse]


def tau_step(
    cohort: g.Geng2017Cohort,
    *,
    seed: int,
    days: int,
    compat: str,
    gamma: float,
    window_days: int,
    tau_max: int,
    start_every_days: int,
) -> pd.DataFrame:
    """The :class:`oncobench.schemas.TauStep` set.

    From each alive start day t (every ``start_every_days`` days, t + tau_max < days), the
    factual treatment sequence (sequence 0) and the 2 tau_max sliding single-treatment
    sequences (1..2 tau_max) are rolled tau_max days forward from the patient's own state
    with its factual noise; one row per tau = 1..tau_max.
    """
    factual = _factual(cohort, seed=seed, days=days, compat=compat, gamma=gamma, window_days=window_days)
    dev = cohort.patient_id.device
    starts = torch.arange(0, days - tau_max, start_every_days, device=dev)
    alive = starts.unsqueeze(0) < factual.stop_day.unsqueeze(1)
    p_idx, s_idx = torch.nonzero(alive, as_tuple=True)
    t_idx = starts[s_idx]
    alt_chemo, alt_radio = tau_sequences(tau_max)
    n_seq = 1 + alt_chemo.shape[0]
    steps = t_idx.unsqueeze(1) + torch.arange(tau_max, device=dev)
    fact_chemo = factual.chemo_given[p_idx.unsqueeze(1), steps]
    fact_radio = factual.radio_given[p_idx.unsqueeze(1), steps]
    chemo = torch.cat([fact_chemo.unsqueeze(1), alt_chemo.to(dev).expand(len(p_idx), -1, -1)], 1).reshape(-1, tau_max)
    radio = torch.cat([fact_radio.unsqueeze(1), alt_radio.to(dev).expand(len(p_idx), -1, -1)], 1).reshape(-1, tau_max)
    rows_p = p_idx.repeat_interleave(n_seq)
    rows_t = t_idx.repeat_interleave(n_seq)
    seq = torch.arange(n_seq, device=dev).repeat(len(p_idx))
    is_factual = (chemo == fact_chemo.repeat_interleave(n_seq, 0)).all(1) & (radio == fact_radio.repeat_interleave(n_seq, 0)).all(1)
    prev = _prev_conc(factual)
    sub = cohort.take(rows_p)
    v_start = factual.volume_cm3[rows_p, rows_t]
    c_prev = prev[rows_p, rows_t]
    v_tau, s_tau = engine.roll_forward(
        sub, seed=seed, compat=compat, start_day=rows_t, volume=v_start, conc_prev=c_prev,
        chemo_plan=chemo, radio_plan=radio,
    )
    chemo_s, radio_s = plan_strings(chemo), plan_strings(radio)
    n_rows = len(rows_p)
    rep = lambda a: np.repeat(a, tau_max)  # noqa: E731
    return pd.DataFrame(
        {
            "patient_id": rep(sub.patient_id.cpu().numpy()),
            "patient_type": rep(sub.patient_type.cpu().numpy()),
            "volume_cm3": rep(v_start.cpu().numpy()),
            "chemo_concentration_prev": rep(c_prev.cpu().numpy()),
            "is_factual": rep(is_factual.cpu().numpy()),
            "start_day": rep(rows_t.cpu().numpy().astype(np.int64)),
            "sequence": rep(seq.cpu().numpy().astype(np.int64)),
            "chemo_plan": rep(chemo_s),
            "radio_plan": rep(radio_s),
            "tau": np.tile(np.arange(1, tau_max + 1, dtype=np.int64), n_rows),
            "volume_tau_cm3": v_tau.reshape(-1).cpu().numpy(),
            "status_tau": _status_names(s_tau.reshape(-1)),
        }
    )
