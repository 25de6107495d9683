"""The geng2017 model as an inverse problem (``oncobench.inverse.problem.InverseProblem``).

What the clinic observes is the release's Trajectory table without its latent columns: the
measured diameter on the scan days the table records, and death or recovery at the stop. It is
encoded on the scan grid (days 0, s, 2s, ... with s = ``observation.scan_every_days``, the only
days a diameter is ever measured), one column per scan day, channels as ``CHANNELS``:

- ``log_diameter_obs``: log of the measured diameter (cm), 0 where ``observed`` is 0;
- ``observed``: 1 where the scan was measured and written (a recovered patient's 0 cm reads 0);
- ``followed``: the fraction of the days from this scan to the next on which the patient was
  followed (day <= stop day), which carries the exact stop day;
- ``dead``, ``recovered``: 1 from the scan interval holding the stop day on.

The daily treatments of the historical policy are latent in geng2017 (the table's
``chemo_given``/``radio_given`` columns are not what a clinic publishes), so no channel records
them (``treatment_channels = ()``); they give the treatment class instead: which treatments the
patient received at least once on the days the table records.

Reading: ``shared/notes/inverse-verification.md`` (encoding rules); the simulator and its
observed channels: :mod:`oncobench.engine`, :mod:`oncobench.verification`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from oncobench import cohort as cohort_io
from oncobench import engine, schemas, trajectories
from oncobench import verification as V
from oncobench.config import Config, ConfigError
from oncobench.inverse.checks import Check
from oncobench.inverse.problem import DEFECTS, PERTURBED, Draw
from oncobench.models import geng2017 as g

CHANNELS = ("log_diameter_obs", "observed", "followed", "dead", "recovered")
# The treatment sequence's opening: which treatment came first (both: on the same day). Nearly
# every patient receives both treatments at some point over a course, so "which were given"
# carries no information; the order does.
TREATMENT_CLASSES = ("none", "chemo_first", "radio_first", "both_same_day")
# ``verify.thresholds.identifiable: null``: the parameter the scans identify at every confounding
# strength. Measured with NPE on config/geng2017.yaml (README): radiosensitivity contracts by
# 0.28-0.55; the growth rate by 0.11 at gamma 0 (most patients are treated from the first days,
# so untreated growth is barely seen) and 0.31-0.51 at gamma 4, so it is reported, not gated;
# chemo_beta_c and the patient type leave no measurable trace. The planted non-identifiable defect
# hits the first name.
DEFAULT_IDENTIFIABLE = ("log_radio_alpha_per_gy",)
# The cohort field each parameter is the (log of the) value of.
PARAMETER_FIELDS = {
    "log_growth_rate_per_day": "growth_rate_per_day",
    "log_radio_alpha_per_gy": "radio_alpha_per_gy",
    "chemo_beta_c": "chemo_beta_c",
}
SUMMARY_COLUMNS = (
    "first_log_diameter", "last_log_diameter", "min_log_diameter", "max_log_diameter",
    "log_diameter_slope_per_day", "n_scans", "roughness", "increment_autocorrelation", "follow_up_days", "died",
    "recovered",
)
# Simulated patients: ids OFFSET + key * STRIDE + (0 .. n-1), disjoint from any release cohort
# (ids 0 .. N-1), from the old verify stage's training ids (10**12 + i) and across keys.
ID_OFFSET = 10**13
KEY_STRIDE = 2**32
# Keys from here on are reserved: the causal checks' patients and the population medians.
RESERVED_KEY = 2**31 - 2
CAUSAL_KEY = RESERVED_KEY
MEDIAN_KEY = RESERVED_KEY + 1
CAUSAL_PATIENTS = 500
MEDIAN_PATIENTS = 20_000
# The perturbed simulator: growth rate and measurement noise scaled by these factors.
PERTURBED_GROWTH = 1.5
PERTURBED_NOISE = 0.5


def _ids(n: int, key: int) -> torch.Tensor:
    return ID_OFFSET + key * KEY_STRIDE + torch.arange(n, dtype=torch.int64)


def patient_ids(n: int, key: int) -> torch.Tensor:
    """The ids of ``simulate(n, key=key)``'s patients (int64, CPU)."""
    if not 0 <= key < RESERVED_KEY:
        raise ValueError(f"simulate: key = {key}; expected 0 <= key < {RESERVED_KEY} (keys from there on are reserved)")
    if not 0 <= n <= KEY_STRIDE:
        raise ValueError(f"simulate: n = {n}; expected 0 <= n <= {KEY_STRIDE}")
    return _ids(n, key)


# --------------------------------------------------------------------------- encoding
def scan_grid(daily: torch.Tensor, scan_every: int) -> torch.Tensor:
    """Observed channels on the scan grid (rows, len(CHANNELS), ceil(days / scan_every)), float32.

    Args:
        daily: (rows, len(V.CHANNELS), days) float64 daily observed channels
            (:func:`oncobench.verification.features_from_course` or ``features_from_frame``).
        scan_every: days between scans; scans fall on the multiples of it.
    """
    n, _, days = daily.shape
    ch = {name: daily[:, i] for i, name in enumerate(V.CHANNELS)}
    t = math.ceil(days / scan_every)
    pad = t * scan_every - days

    def bins(v: torch.Tensor) -> torch.Tensor:
        return F.pad(v, (0, pad)).view(n, t, scan_every)

    bin_days = bins(torch.ones_like(ch["followed"])).sum(-1)  # the last interval may be short
    scan = slice(0, days, scan_every)
    return torch.stack(
        [
            ch["log_diameter_obs"][:, scan],
            ch["observed"][:, scan],
            bins(ch["followed"]).sum(-1) / bin_days,
            bins(ch["dead"]).amax(-1),
            bins(ch["recovered"]).amax(-1),
        ],
        dim=1,
    ).to(torch.float32)


def summary_features(daily: torch.Tensor) -> pd.DataFrame:
    """Per-patient summary (columns ``SUMMARY_COLUMNS``) of the daily observed channels.

    Log diameters are of the measured diameter in cm over the measured scans; the slope is the
    least-squares slope on the day (per day); ``roughness`` is the mean absolute second
    difference of consecutive measured log diameters and ``increment_autocorrelation`` the
    lag-1 autocorrelation of their centred first differences (both 0 with fewer than three
    scans): the two features that measurement noise moves. The historical policy's random
    treatment days move them as much (a 2 Gy fraction shrinks the diameter by 13% on average, the
    scan error is 5%), so removing the noise lowers the mean roughness by about a quarter, not
    to 0. ``follow_up_days`` counts the days up to the stop.
    """
    ch = {name: daily[:, i] for i, name in enumerate(V.CHANNELS)}
    n, days = ch["observed"].shape
    seen = ch["observed"] > 0.5
    y = ch["log_diameter_obs"]
    day = torch.arange(days, dtype=torch.float64).expand(n, days)
    k = seen.sum(1)
    some = k > 0
    kf = k.clamp_min(1).to(torch.float64)
    first = y.gather(1, seen.to(torch.int8).argmax(1, keepdim=True)).squeeze(1)
    last = y.gather(1, (days - 1 - seen.flip(1).to(torch.int8).argmax(1, keepdim=True))).squeeze(1)
    lo = torch.where(seen, y, math.inf).amin(1)
    hi = torch.where(seen, y, -math.inf).amax(1)
    t_mean = (day * seen).sum(1) / kf
    y_mean = (y * seen).sum(1) / kf
    dt = torch.where(seen, day - t_mean.unsqueeze(1), 0.0)
    sxx = (dt * dt).sum(1)
    slope = torch.where(sxx > 0, (dt * (y - y_mean.unsqueeze(1))).sum(1) / sxx.clamp_min(1e-300), 0.0)
    # the measured values in day order, packed to the front
    order = torch.where(seen, day, day + days).argsort(1)
    packed = y.gather(1, order)
    position = torch.arange(days).expand(n, days)
    d2 = (packed[:, 2:] - 2.0 * packed[:, 1:-1] + packed[:, :-2]).abs()
    valid2 = position[:, 2:] < k.unsqueeze(1)
    roughness = torch.where(k >= 3, (d2 * valid2).sum(1) / (k - 2).clamp_min(1), 0.0)
    # lag-1 autocorrelation of the centred increments: iid measurement error makes it negative,
    # while the tumour's own increments (drift, chemo carried over) are not anti-correlated
    valid1 = position[:, 1:] < k.unsqueeze(1)
    d1 = torch.where(valid1, packed[:, 1:] - packed[:, :-1], 0.0)
    centred = torch.where(valid1, d1 - (d1.sum(1) / (k - 1).clamp_min(1)).unsqueeze(1), 0.0)
    sq = (centred * centred).sum(1)
    lag1 = (centred[:, 1:] * centred[:, :-1]).sum(1)
    autocorrelation = torch.where((k >= 3) & (sq > 0), lag1 / sq.clamp_min(1e-300), 0.0)
    zero = torch.zeros_like(first)
    columns = [
        torch.where(some, first, zero), torch.where(some, last, zero), torch.where(some, lo, zero),
        torch.where(some, hi, zero), slope, k.to(torch.float64), roughness, autocorrelation, ch["followed"].sum(1),
        ch["dead"].amax(1), ch["recovered"].amax(1),
    ]
    return pd.DataFrame({name: c.numpy() for name, c in zip(SUMMARY_COLUMNS, columns)})


def treatment_class(chemo: torch.Tensor, radio: torch.Tensor) -> torch.Tensor:
    """Index into ``TREATMENT_CLASSES`` from (rows, days) treatment indicators: which treatment
    was given first (both on the same first day: ``both_same_day``; neither: ``none``)."""
    days = chemo.shape[1]
    position = torch.arange(days, device=chemo.device)
    first_c = torch.where(chemo, position, days).amin(1) if days else torch.zeros(chemo.shape[0], dtype=torch.int64)
    first_r = torch.where(radio, position, days).amin(1) if days else torch.zeros(radio.shape[0], dtype=torch.int64)
    out = torch.where(first_c < first_r, 1, torch.where(first_r < first_c, 2, 3))
    return torch.where((first_c == days) & (first_r == days), 0, out).to(torch.int64).cpu()


def _draw(daily: torch.Tensor, theta: torch.Tensor, label: torch.Tensor, treatment: torch.Tensor, scan_every: int) -> Draw:
    return Draw(
        theta=theta.to(torch.float32), x=scan_grid(daily, scan_every), label=label, treatment=treatment,
        summary=summary_features(daily),
    )


# --------------------------------------------------------------------------- defects
def with_parameter(cohort: g.Geng2017Cohort, name: str, value: torch.Tensor | float) -> g.Geng2017Cohort:
    """The cohort with the field behind parameter ``name`` set to ``value`` (natural scale);
    radiosensitivity beta follows alpha (fixed alpha/beta ratio)."""
    field = PARAMETER_FIELDS[name]
    value = torch.as_tensor(value, dtype=torch.float64, device=cohort.patient_id.device).expand(len(cohort)).clone()
    changes = {field: value}
    if field == "radio_alpha_per_gy":
        changes["radio_beta_per_gy2"] = value / g.ALPHA_BETA_RATIO_GY
    return dataclasses.replace(cohort, **changes)


def _check_defect(defect: str | None) -> None:
    if defect is not None and defect not in (*DEFECTS, PERTURBED):
        raise ValueError(f"defect = {defect!r}; expected one of {(*DEFECTS, PERTURBED)} or None")


# --------------------------------------------------------------------------- problem
class Geng2017Problem:
    """The geng2017 model under one release's clinic and confounded policy.

    Args:
        cfg: the run configuration (``model: geng2017``): seed, simulation, policy window,
            observation design and ``verify.thresholds.identifiable``.
        gamma: confounding strength of the historical policy the release was simulated with.
        device: where patients are simulated; every returned tensor is on the CPU.
    """

    model = "geng2017"
    parameters = V.PARAMETERS
    label_name = V.PATIENT_TYPE
    label_classes = ("1", "2", "3")
    treatment_classes = TREATMENT_CLASSES
    treatment_channels: tuple[int, ...] = ()
    channels = CHANNELS

    def __init__(self, cfg: Config, gamma: float, device: torch.device) -> None:
        if cfg.model != "geng2017":
            raise ValueError(f"config: model is {cfg.model!r}; Geng2017Problem needs model: geng2017")
        self.cfg = cfg
        self.gamma = float(gamma)
        self.device = torch.device(device)
        named = cfg.verify.thresholds.identifiable
        if named is None:
            named = DEFAULT_IDENTIFIABLE
        unknown = [p for p in named if p not in (*V.PARAMETERS, V.PATIENT_TYPE)]
        if unknown:
            raise ConfigError(
                f"verify.thresholds.identifiable: {unknown[0]!r} is not a geng2017 latent; "
                f"expected some of {(*V.PARAMETERS, V.PATIENT_TYPE)}"
            )
        self.identifiable = tuple(p for p in named if p != V.PATIENT_TYPE)
        self.label_identifiable = V.PATIENT_TYPE in named
        # population medians of the fields a defect may freeze, from a reserved draw
        reference = g.draw_cohort(cfg.seed, _ids(MEDIAN_PATIENTS, MEDIAN_KEY))
        self._median = {
            name: float(getattr(reference, field).median()) for name, field in PARAMETER_FIELDS.items()
        }

    @property
    def x_shape(self) -> tuple[int, int]:
        """(channels, scan days) of ``x``."""
        return len(CHANNELS), math.ceil(self.cfg.simulation.days / self.cfg.observation.scan_every_days)

    # ------------------------------------------------------------------ simulation
    def _planted(self, cohort: g.Geng2017Cohort, defect: str | None) -> g.Geng2017Cohort:
        """The cohort the simulator runs on with ``defect`` planted (its theta stays the drawn one)."""
        if defect == "wrong_sign":
            return dataclasses.replace(
                cohort, chemo_beta_c=-cohort.chemo_beta_c, radio_alpha_per_gy=-cohort.radio_alpha_per_gy,
                radio_beta_per_gy2=-cohort.radio_beta_per_gy2,
            )
        if defect == "non_identifiable":
            if not self.identifiable:
                raise ValueError("defect non_identifiable: verify.thresholds.identifiable names no continuous parameter")
            name = self.identifiable[0]
            return with_parameter(cohort, name, self._median[name])
        if defect == PERTURBED:
            return dataclasses.replace(cohort, growth_rate_per_day=PERTURBED_GROWTH * cohort.growth_rate_per_day)
        return cohort

    def _observation(self, defect: str | None) -> engine.Observation:
        obs = self.cfg.observation
        cv = {"no_noise": 0.0, PERTURBED: PERTURBED_NOISE * obs.diameter_cv}.get(defect, obs.diameter_cv)
        return engine.Observation(obs.scan_every_days, cv)

    def simulate(self, n: int, *, key: int, defect: str | None = None) -> Draw:
        """``n`` fresh patients (ids :func:`patient_ids`) under the release's policy and clinic,
        with ``defect`` planted when given. Deterministic in (n, key, defect)."""
        _check_defect(defect)
        cfg = self.cfg
        drawn = g.draw_cohort(cfg.seed, patient_ids(n, key).to(self.device))
        run = self._planted(drawn, defect)
        observation = self._observation(defect)
        daily, chemo, radio = [], [], []
        for part in cohort_io.batches(run, trajectories.batch_size(cfg.simulation.chunk_patients, cfg.simulation.days)):
            course = engine.simulate_course(
                part, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat,
                treatment=engine.Policy(self.gamma, cfg.policy.window_days), observation=observation,
            )
            recorded = V.recorded_days(course, cfg.simulation.record_every)
            daily.append(V.features_from_course(course, record_every=cfg.simulation.record_every).cpu())
            chemo.append((course.chemo_given & recorded).cpu())
            radio.append((course.radio_given & recorded).cpu())
        days = cfg.simulation.days
        empty = torch.zeros((0, days), dtype=torch.bool)
        return _draw(
            torch.cat(daily) if daily else torch.zeros((0, len(V.CHANNELS), days), dtype=torch.float64),
            V.parameter_targets(drawn),
            (drawn.patient_type - 1).cpu(),
            treatment_class(torch.cat(chemo) if chemo else empty, torch.cat(radio) if radio else empty),
            cfg.observation.scan_every_days,
        )

    def encode(self, cohort: pd.DataFrame, trajectories: pd.DataFrame) -> Draw:
        """The release patients from their Cohort and Trajectory tables, rows in cohort order.

        x and the summary come from the observed columns (patient_id, day, status,
        diameter_obs_cm). theta and the label come from the cohort's latent columns and the
        treatment class from ``chemo_given``/``radio_given``; where a table lacks them (a
        real-world reference) theta is NaN and label and treatment are -1.
        """
        cfg = self.cfg
        days = cfg.simulation.days
        pid = torch.as_tensor(cohort["patient_id"].to_numpy(), dtype=torch.int64)
        n = len(pid)
        daily = V.features_from_frame(trajectories, pid, days=days)
        if set(schemas.Cohort.to_schema().columns) <= set(cohort.columns):
            latent = cohort_io.from_frame(cohort)
            theta = V.parameter_targets(latent)
            label = latent.patient_type - 1
        else:
            theta = torch.full((n, len(self.parameters)), math.nan, dtype=torch.float64)
            label = torch.full((n,), -1, dtype=torch.int64)
        if {"chemo_given", "radio_given"} <= set(trajectories.columns):
            given, _ = V.treatment_targets_from_frame(trajectories, pid, days=days)
            treatment = treatment_class(given[:, 0] > 0.5, given[:, 1] > 0.5)
        else:
            treatment = torch.full((n,), -1, dtype=torch.int64)
        return _draw(daily, theta, label, treatment, cfg.observation.scan_every_days)

    # ------------------------------------------------------------------ checks
    def causal_checks(self, *, defect: str | None = None) -> list[Check]:
        """Monotonicity in treatment (common random numbers over the configured regimens'
        schedules) and the analytic Gompertz solution, on ``CAUSAL_PATIENTS`` reserved patients
        with ``defect`` planted in the simulator when given."""
        _check_defect(defect)
        cfg = self.cfg
        run = self._planted(g.draw_cohort(cfg.seed, _ids(CAUSAL_PATIENTS, CAUSAL_KEY)), defect)
        sim = cfg.simulation
        return V.monotonicity_checks(run, cfg, self.device) + V.gompertz_checks(
            run, seed=cfg.seed, days=sim.days, compat=sim.compat, device=self.device
        )


__all__ = [
    "CHANNELS", "Geng2017Problem", "PARAMETER_FIELDS", "SUMMARY_COLUMNS", "TREATMENT_CLASSES", "patient_ids",
    "scan_grid", "summary_features", "treatment_class", "with_parameter",
]
