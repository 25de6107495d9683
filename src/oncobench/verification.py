"""The geng2017 observation encoding and the causal and analytic checks of its simulator.

Used by :mod:`oncobench.inverse.geng2017`, the geng2017 inverse problem of the verify stage:

1. **Observed inputs.** :func:`features_from_course` and :func:`features_from_frame` turn a
   simulated course or a written Trajectory table into the same (rows, channel, day) tensor of
   what a clinic sees (scan-day measured diameters, the day, and death or recovery), never the
   treatments or latent volumes; :func:`parameter_targets` gives the generating parameters on the
   scale they are inferred on, :func:`treatment_targets_from_frame` the historical policy's
   daily treatments.
2. **Causal relations** (:func:`monotonicity_checks`). With common random numbers, more
   treatment can never leave a bigger tumour: for every patient and day, volume(chemo + radio)
   <= volume(chemo) <= volume(none) and volume(chemo + radio) <= volume(radio) <= volume(none).
3. **Analytic solution** (:func:`gompertz_checks`). Untreated and noise-free, the engine must
   follow the Gompertz solution exactly (``compat='none'``) or within the explicit Euler
   scheme's error bound (``compat='reference'``).

The science takes tensors, a Config and a data frame and returns tensors and checks; files are
read and written by the CLI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from oncobench import engine
from oncobench.config import Config, Schedule
from oncobench.inverse.checks import Check
from oncobench.models import geng2017 as g
from oncobench.schemas import STATUSES

PARAMETERS = ("log_growth_rate_per_day", "log_radio_alpha_per_gy", "chemo_beta_c")
# The latent name of the patient type in ``verify.thresholds.identifiable``.
PATIENT_TYPE = "patient_type"
# Channels of the observed-input tensor (rows, channel, day).
CHANNELS = ("log_diameter_obs", "observed", "followed", "dead", "recovered", "day")
# Relative tolerance of the monotonicity check (float64 rounding of equal volumes).
MONOTONICITY_RTOL = 1e-12
# Tolerances of the analytic Gompertz checks (relative volume / absolute log volume).
GOMPERTZ_RTOL = 1e-9
EULER_BOUND_ATOL = 1e-9


# --------------------------------------------------------------------------- inputs
def _observed_channels(
    obs_cm: torch.Tensor, recorded: torch.Tensor, stop_day: torch.Tensor, status: torch.Tensor
) -> torch.Tensor:
    """Stack the observed channels (rows, len(CHANNELS), days), float64, never NaN."""
    n, days = obs_cm.shape
    day = torch.arange(days, device=obs_cm.device).expand(n, days)
    stop = stop_day.unsqueeze(1)
    followed = day <= stop
    # a recovered patient's stop-day scan reads 0 cm; that day is carried by the status mask
    seen = recorded & followed & torch.isfinite(obs_cm) & (obs_cm > 0)
    log_d = torch.where(seen, torch.log(torch.where(seen, obs_cm, torch.ones_like(obs_cm))), torch.zeros_like(obs_cm))
    after_stop = day >= stop
    dead = after_stop & (status == g.STATUS_DEAD).unsqueeze(1)
    recovered = after_stop & (status == g.STATUS_RECOVERED).unsqueeze(1)
    f64 = torch.float64
    day_frac = day.to(f64) / max(days - 1, 1)
    return torch.stack([log_d, seen.to(f64), followed.to(f64), dead.to(f64), recovered.to(f64), day_frac], dim=1)


def recorded_days(course: engine.Course, record_every: int) -> torch.Tensor:
    """The (rows, days) mask of the days the Trajectory table writes: every ``record_every``-th
    day up to the stop and the stop day (as ``trajectories.to_frame``)."""
    n, days = course.volume_cm3.shape
    day = torch.arange(days, device=course.volume_cm3.device).expand(n, days)
    stop = course.stop_day.unsqueeze(1)
    return (day <= stop) & ((day % record_every == 0) | (day == stop))


def features_from_course(course: engine.Course, *, record_every: int) -> torch.Tensor:
    """Observed inputs (rows, channel, day) of simulated courses, as they would be written.

    Only what a clinic sees enters: measured diameters on scan days that the table records,
    the day, and death or recovery at the stop. Treatments and latent volumes do not.
    """
    return _observed_channels(
        course.diameter_obs_cm, recorded_days(course, record_every), course.stop_day, course.status
    )


def _frame_grid(trajectories: pd.DataFrame, patient_id: torch.Tensor, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and day index of every Trajectory row into a (patients, days) grid."""
    pid = patient_id.cpu().numpy()
    index = pd.Index(pid)
    if not index.is_unique:
        raise ValueError("cohort: patient_id is not unique")
    rows = index.get_indexer(trajectories["patient_id"].to_numpy())
    if (rows < 0).any():
        extra = trajectories["patient_id"].to_numpy()[rows < 0][0]
        raise ValueError(f"trajectories: column patient_id holds {extra}, which is not in the cohort")
    missing = np.setdiff1d(pid, trajectories["patient_id"].to_numpy())
    if len(missing):
        raise ValueError(f"trajectories: no rows for patient_id {missing[0]} of the cohort ({len(missing)} patients missing)")
    day = trajectories["day"].to_numpy().astype(np.int64)
    if (day >= days).any():
        raise ValueError(f"trajectories: column day holds {day.max()}; expected < simulation.days ({days})")
    flat = rows * days + day
    if len(np.unique(flat)) != len(flat):
        raise ValueError("trajectories: duplicate (patient_id, day) rows")
    return rows, day


def _stop_from_frame(trajectories: pd.DataFrame, rows: np.ndarray, day: np.ndarray, n: int, days: int) -> tuple[torch.Tensor, torch.Tensor]:
    code = pd.Categorical(trajectories["status"], categories=STATUSES).codes.astype(np.int64)
    stop_day = np.full(n, days, dtype=np.int64)
    status = np.zeros(n, dtype=np.int64)
    ended = code != g.STATUS_ALIVE
    stop_day[rows[ended]] = day[ended]
    status[rows[ended]] = code[ended]
    return torch.from_numpy(stop_day), torch.from_numpy(status).to(torch.int8)


def features_from_frame(trajectories: pd.DataFrame, patient_id: torch.Tensor, *, days: int) -> torch.Tensor:
    """Observed inputs (rows, channel, day) from a Trajectory table, rows in ``patient_id`` order.

    Reads only the observed columns (patient_id, day, status, diameter_obs_cm); the result
    equals :func:`features_from_course` of the course the table was written from.
    """
    n = len(patient_id)
    rows, day = _frame_grid(trajectories, patient_id, days)
    stop_day, status = _stop_from_frame(trajectories, rows, day, n, days)
    obs = np.full((n, days), np.nan)
    obs[rows, day] = trajectories["diameter_obs_cm"].to_numpy(dtype=np.float64, na_value=np.nan)
    recorded = np.zeros((n, days), dtype=bool)
    recorded[rows, day] = True
    return _observed_channels(torch.from_numpy(obs), torch.from_numpy(recorded), stop_day, status)


# --------------------------------------------------------------------------- targets
def parameter_targets(cohort: g.Geng2017Cohort) -> torch.Tensor:
    """True values (rows, len(PARAMETERS)) on the scale they are recovered on, float64."""
    return torch.stack(
        [torch.log(cohort.growth_rate_per_day), torch.log(cohort.radio_alpha_per_gy), cohort.chemo_beta_c], dim=1
    ).cpu()


def _decision_days(stop_day: torch.Tensor, days: int) -> torch.Tensor:
    # the policy decides on days 1 .. stop-1 (none on day 0, none from the stop day on)
    day = torch.arange(days).expand(len(stop_day), days)
    return (day >= 1) & (day < stop_day.cpu().unsqueeze(1))


def treatment_targets_from_course(course: engine.Course) -> tuple[torch.Tensor, torch.Tensor]:
    """(given (rows, 2, days) float, mask (rows, days) bool) of the policy's decision days."""
    given = torch.stack([course.chemo_given, course.radio_given], dim=1).cpu().to(torch.float32)
    return given, _decision_days(course.stop_day, course.days)


def treatment_targets_from_frame(
    trajectories: pd.DataFrame, patient_id: torch.Tensor, *, days: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`treatment_targets_from_course`, from the table's latent treatment columns,
    masked further to the days the table records."""
    n = len(patient_id)
    rows, day = _frame_grid(trajectories, patient_id, days)
    stop_day, _ = _stop_from_frame(trajectories, rows, day, n, days)
    given = np.zeros((n, 2, days), dtype=np.float32)
    given[rows, 0, day] = trajectories["chemo_given"].to_numpy(dtype=np.float32)
    given[rows, 1, day] = trajectories["radio_given"].to_numpy(dtype=np.float32)
    recorded = np.zeros((n, days), dtype=bool)
    recorded[rows, day] = True
    return torch.from_numpy(given), _decision_days(stop_day, days) & torch.from_numpy(recorded)


# --------------------------------------------------------------------------- causal checks
def _schedule_name(kind: str, s: Schedule) -> str:
    return f"{kind}(start={s.start_day},every={s.every_days},doses={s.doses or 'all'})"


def _plan_row(s: Schedule | None, days: int) -> torch.Tensor:
    row = torch.zeros(days, dtype=torch.bool)
    if s is not None:
        row[s.days(days)] = True
    return row


def monotonicity_checks(cohort: g.Geng2017Cohort, cfg: Config, device: torch.device) -> list[Check]:
    """Count (patient, day) pairs where more treatment leaves a bigger tumour.

    Arms are built from the distinct chemo and radio schedules of the configured regimens:
    none, each chemo schedule, each radio schedule, and each chemo x radio pair; every
    patient's arms share their noise (same patient id and replicate). For each pair (c, r):
    V(c+r) <= V(c) <= V(none) and V(c+r) <= V(r) <= V(none), within relative 1e-12.
    """
    days, compat, seed = cfg.simulation.days, cfg.simulation.compat, cfg.seed
    chemos = list(dict.fromkeys(r.chemo for r in cfg.counterfactuals.regimens if r.chemo is not None))
    radios = list(dict.fromkeys(r.radio for r in cfg.counterfactuals.regimens if r.radio is not None))
    arms: dict[str, tuple[Schedule | None, Schedule | None]] = {"none": (None, None)}
    pairs: list[tuple[str, str]] = []  # (more treatment, less treatment)
    for c in chemos:
        arms[_schedule_name("chemo", c)] = (c, None)
        pairs.append((_schedule_name("chemo", c), "none"))
    for r in radios:
        arms[_schedule_name("radio", r)] = (None, r)
        pairs.append((_schedule_name("radio", r), "none"))
    for c in chemos:
        for r in radios:
            both = f"{_schedule_name('chemo', c)}+{_schedule_name('radio', r)}"
            arms[both] = (c, r)
            pairs += [(both, _schedule_name("chemo", c)), (both, _schedule_name("radio", r))]
    if not pairs:
        return []
    names = list(arms)
    a = len(names)
    chemo_rows = torch.stack([_plan_row(arms[k][0], days) for k in names])
    radio_rows = torch.stack([_plan_row(arms[k][1], days) for k in names])
    violations = dict.fromkeys(pairs, 0)
    chunk = max(1, min(cfg.simulation.chunk_patients, 6_000_000 // days) // a)
    for lo in range(0, len(cohort), chunk):
        part = cohort.take(torch.arange(lo, min(lo + chunk, len(cohort)))).to(device)
        n = len(part)
        rows = part.take(torch.arange(n, device=device).repeat(a))  # arm-major
        plan = engine.Plan(
            chemo=chemo_rows.repeat_interleave(n, 0).to(device), radio=radio_rows.repeat_interleave(n, 0).to(device)
        )
        course = engine.simulate_course(rows, seed=seed, days=days, compat=compat, treatment=plan, noise=True)
        vol = course.volume_cm3.view(a, n, days)
        for more, less in pairs:
            vm, vl = vol[names.index(more)], vol[names.index(less)]
            violations[(more, less)] += int((vm > vl * (1.0 + MONOTONICITY_RTOL)).sum())
    return [Check("causal_monotonicity", f"{more} <= {less}", "violations", float(v), 0.0, "<=") for (more, less), v in violations.items()]


def gompertz_checks(
    cohort: g.Geng2017Cohort, *, seed: int, days: int, compat: str, device: torch.device
) -> list[Check]:
    """Compare the untreated, noise-free engine with the analytic Gompertz solution.

    Days from the stop (death) on are excluded: the engine clamps the volume there.
    """
    c = cohort.to(device)
    n = len(c)
    none = torch.zeros((n, days), dtype=torch.bool, device=device)
    course = engine.simulate_course(c, seed=seed, days=days, compat=compat, treatment=engine.Plan(none, none), noise=False)
    t = torch.arange(days, device=device, dtype=torch.float64).expand(n, days)
    col = lambda v: v.unsqueeze(1)  # noqa: E731
    exact = g.gompertz_volume(col(c.initial_volume_cm3), col(c.growth_rate_per_day), col(c.carrying_capacity_cm3), t)
    live = t < col(course.stop_day).to(torch.float64)
    subject = f"untreated noise-free, compat={compat}"
    if compat != "reference":
        rel = ((course.volume_cm3 - exact).abs() / exact)[live]
        value = float(rel.max()) if rel.numel() else 0.0
        return [Check("analytic_gompertz", subject, "max_relative_error", value, GOMPERTZ_RTOL, "<=")]
    # The reference update V <- V (1 + rho ln(K/V)) is explicit Euler on the Gompertz ODE.
    # In y = ln(K/V) > 0 it is E(y) = y - ln(1 + rho y); the exact one-day flow is
    # F(y) = y e^{-rho}. With e_t = y_ref(t) - y_exact(t):
    #   e_{t+1} = [E(y_ref(t)) - E(y_exact(t))] + [E(y_exact(t)) - F(y_exact(t))].
    # E'(y) = (1 + rho y - rho) / (1 + rho y) lies in [0, 1) for y > 0 and rho <= 1, so E is
    # a contraction and the first bracket is at most |e_t|; the second is the local error
    # l(y) = |ln(1 + rho y) - (1 - e^{-rho}) y|. From e_0 = 0:
    #   |e_t| <= sum_{s<t} l(y_exact(s)).
    # Alive means V < V_death < K, so y > 0 on every compared day.
    rho = col(c.growth_rate_per_day)
    k = col(c.carrying_capacity_cm3)
    y_ref = torch.log(k / course.volume_cm3)
    y_exact = torch.log(k / exact)
    local = (torch.log1p(rho * y_exact) + torch.expm1(-rho) * y_exact).abs()
    bound = torch.cumsum(local, dim=1) - local  # sum over s < t
    err = (y_ref - y_exact).abs()
    excess = (err - bound)[live]
    return [
        Check("analytic_gompertz", subject, "max_excess_over_euler_bound", float(excess.max()) if excess.numel() else 0.0, EULER_BOUND_ATOL, "<="),
        Check("analytic_gompertz", subject, "max_abs_log_volume_error", float(err[live].max()) if live.any() else 0.0),
    ]


__all__ = [
    "CHANNELS", "PARAMETERS", "PATIENT_TYPE", "features_from_course", "features_from_frame", "gompertz_checks",
    "monotonicity_checks", "parameter_targets", "recorded_days", "treatment_targets_from_course",
    "treatment_targets_from_frame",
]
