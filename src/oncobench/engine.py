"""Batched trajectory simulation of the geng2017 model in PyTorch.

The leading dimension of every tensor is the row: patient x arm x replicate. Python loops run
over days only. Noise for row r on day t is keyed by (seed, stream, replicate_r,
patient_id_r, t), so rows of one patient and replicate share their noise whatever their
treatment (common random numbers) and whatever batch they sit in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oncobench import rng
from oncobench.models import geng2017 as g
from oncobench.rng import Stream


@dataclass(frozen=True)
class Policy:
    """The literature's confounded historical policy with strength ``gamma``."""

    gamma: float
    window_days: int = 15


@dataclass(frozen=True)
class Plan:
    """A fixed treatment plan: boolean (rows, days) tensors of chemo doses and radio fractions."""

    chemo: torch.Tensor
    radio: torch.Tensor


@dataclass(frozen=True)
class Observation:
    """What a clinic measures: scans every ``scan_every_days`` with log-normal error ``diameter_cv``."""

    scan_every_days: int
    diameter_cv: float


@dataclass(frozen=True)
class Course:
    """A simulated course from day 0; day-indexed tensors have shape (rows, days).

    ``stop_day`` is the day of death or recovery, ``days`` when the patient is still alive at
    the horizon; values after ``stop_day`` repeat the last state and are never written.
    """

    volume_cm3: torch.Tensor
    chemo_concentration: torch.Tensor
    chemo_given: torch.Tensor
    radio_given: torch.Tensor
    diameter_obs_cm: torch.Tensor  # NaN on days without a scan
    status: torch.Tensor  # final status per row (int8)
    stop_day: torch.Tensor  # int64 per row

    @property
    def days(self) -> int:
        return int(self.volume_cm3.shape[1])

    @property
    def radio_dose_gy(self) -> torch.Tensor:
        return g.RADIO_DOSE_GY * self.radio_given.to(torch.float64)


def noise_keys(
    seed: int, cohort: g.Geng2017Cohort, replicate: int | torch.Tensor, *, compat: str, policy: bool, observed: bool
) -> dict[Stream, torch.Tensor]:
    """The per-row keys of the streams a simulation uses (only those: keys cost hashing)."""
    streams = [Stream.PROCESS_NOISE]
    if compat == "reference":
        streams.append(Stream.RECOVERY)
    if policy:
        streams.append(Stream.POLICY)
    if observed:
        streams.append(Stream.OBSERVATION)
    return {s: rng.patient_keys(seed, s, cohort.patient_id, replicate) for s in streams}


def advance(
    volume: torch.Tensor,
    conc: torch.Tensor,
    dose: torch.Tensor,
    dyn: g.Dynamics,
    keys: dict[Stream, torch.Tensor],
    day: int | torch.Tensor,
    compat: str,
    noise: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume on ``day`` from the previous day's state; returns (volume, died, recovered)."""
    if noise:
        eps = g.PROCESS_NOISE_SD * rng.normal(keys[Stream.PROCESS_NOISE], day)
    else:
        eps = torch.zeros_like(volume)
    new = g.grow(volume, conc, dose, dyn, eps, compat)
    if compat == "reference":
        u_rec = rng.uniform(keys[Stream.RECOVERY], day)
    else:
        u_rec = volume  # unused: recovery is deterministic outside the reference mode
    return g.stop_rules(new, u_rec, compat)


def simulate_course(
    cohort: g.Geng2017Cohort,
    *,
    seed: int,
    days: int,
    compat: str,
    treatment: Policy | Plan,
    observation: Observation | None = None,
    replicate: int | torch.Tensor = 0,
    noise: bool = True,
) -> Course:
    """Simulate every row from day 0 to ``days - 1`` under a policy or a fixed plan.

    Day 0 holds the initial volume; the policy never treats on day 0 (it has no history),
    a plan may. The day-t treatment acts on the day-(t+1) volume.
    """
    n = len(cohort)
    dev = cohort.patient_id.device
    f64 = torch.float64
    keys = noise_keys(
        seed, cohort, replicate, compat=compat, policy=isinstance(treatment, Policy), observed=observation is not None
    )
    dyn = g.Dynamics.of(cohort)

    # day-major buffers: writing row t is contiguous
    vol = torch.empty((days, n), dtype=f64, device=dev)
    conc_rec = torch.empty((days, n), dtype=f64, device=dev)
    chemo_rec = torch.zeros((days, n), dtype=torch.bool, device=dev)
    radio_rec = torch.zeros((days, n), dtype=torch.bool, device=dev)
    status = torch.zeros(n, dtype=torch.int8, device=dev)
    stop_day = torch.full((n,), days, dtype=torch.int64, device=dev)

    v = cohort.initial_volume_cm3.clone()
    policy = treatment if isinstance(treatment, Policy) else None
    if policy is not None:
        # csum[t] = sum of diameters of days < t, for the policy's moving window
        csum = torch.zeros((days + 1, n), dtype=f64, device=dev)
        csum[1] = g.diameter_cm(v)
    else:
        plan_chemo = treatment.chemo.T.contiguous()
        plan_radio = treatment.radio.T.contiguous()
        chemo_rec[0] = plan_chemo[0]
        radio_rec[0] = plan_radio[0]
    conc = g.CHEMO_DOSE_UNITS * chemo_rec[0].to(f64)
    dose = g.RADIO_DOSE_GY * radio_rec[0].to(f64)
    vol[0] = v
    conc_rec[0] = conc

    for t in range(1, days):
        alive = status == g.STATUS_ALIVE
        new, died, recovered = advance(v, conc, dose, dyn, keys, t, compat, noise)
        v = torch.where(alive, new, v)
        stopping = alive & (died | recovered)
        status.masked_fill_(alive & died, g.STATUS_DEAD)
        status.masked_fill_(alive & recovered, g.STATUS_RECOVERED)
        stop_day.masked_fill_(stopping, t)
        still = alive & ~stopping
        if policy is not None:
            lo = max(t - policy.window_days, 0)
            mean_d = (csum[t] - csum[lo]) * (1.0 / (t - lo))
            p = g.policy_probability(mean_d, policy.gamma)
            u_chemo, u_radio = rng.uniform_pair(keys[Stream.POLICY], t)
            chemo = still & (u_chemo < p)
            radio = still & (u_radio < p)
            torch.add(csum[t], g.diameter_cm(v), out=csum[t + 1])
        else:
            chemo = still & plan_chemo[t]
            radio = still & plan_radio[t]
        conc = conc * g.CHEMO_DECAY_PER_DAY + g.CHEMO_DOSE_UNITS * chemo
        dose = g.RADIO_DOSE_GY * radio
        vol[t] = v
        conc_rec[t] = conc
        chemo_rec[t] = chemo
        radio_rec[t] = radio

    obs = observe(vol, keys.get(Stream.OBSERVATION), observation)
    return Course(
        volume_cm3=vol.T,
        chemo_concentration=conc_rec.T,
        chemo_given=chemo_rec.T,
        radio_given=radio_rec.T,
        diameter_obs_cm=obs.T,
        status=status,
        stop_day=stop_day,
    )


def observe(volume_dm: torch.Tensor, keys: torch.Tensor | None, observation: Observation | None) -> torch.Tensor:
    """Measured diameters (cm), day-major (days, rows), on scan days and NaN elsewhere.

    The measurement error is log-normal with SD ``diameter_cv`` (median-unbiased).
    """
    out = torch.full_like(volume_dm, float("nan"))
    if observation is None or keys is None:
        return out
    for t in range(0, volume_dm.shape[0], observation.scan_every_days):
        z = rng.normal(keys, t)
        out[t] = g.diameter_cm(volume_dm[t]) * torch.exp(observation.diameter_cv * z)
    return out


def roll_forward(
    cohort: g.Geng2017Cohort,
    *,
    seed: int,
    compat: str,
    start_day: torch.Tensor,
    volume: torch.Tensor,
    conc_prev: torch.Tensor,
    chemo_plan: torch.Tensor,
    radio_plan: torch.Tensor,
    replicate: int | torch.Tensor = 0,
    noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch each row from its own state on ``start_day`` under a plan of ``tau`` days.

    ``volume`` is the row's volume on ``start_day`` and ``conc_prev`` the chemo concentration
    of the day before; ``chemo_plan``/``radio_plan`` (rows, tau) are the treatments given on
    days ``start_day .. start_day + tau - 1``. The noise is the factual course's noise for the
    same patient and days, so the factual plan reproduces the factual volumes exactly.

    Returns (volumes on days start_day+1 .. start_day+tau, status on those days), (rows, tau).
    """
    n, tau = chemo_plan.shape
    f64 = torch.float64
    keys = noise_keys(seed, cohort, replicate, compat=compat, policy=False, observed=False)
    dyn = g.Dynamics.of(cohort)
    v = volume.clone()
    conc = conc_prev.clone()
    status = torch.zeros(n, dtype=torch.int8, device=v.device)
    out_v = torch.empty((n, tau), dtype=f64, device=v.device)
    out_s = torch.empty((n, tau), dtype=torch.int8, device=v.device)
    for k in range(tau):
        alive = status == g.STATUS_ALIVE
        chemo = alive & chemo_plan[:, k]
        radio = alive & radio_plan[:, k]
        conc = conc * g.CHEMO_DECAY_PER_DAY + g.CHEMO_DOSE_UNITS * chemo
        dose = g.RADIO_DOSE_GY * radio.to(f64)
        new, died, recovered = advance(v, conc, dose, dyn, keys, start_day + (k + 1), compat, noise)
        v = torch.where(alive, new, v)
        status.masked_fill_(alive & died, g.STATUS_DEAD)
        status.masked_fill_(alive & recovered, g.STATUS_RECOVERED)
        out_v[:, k] = v
        out_s[:, k] = status
    return out_v, out_s
