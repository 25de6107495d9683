"""Verify the geng2017 simulator by inverse inference and by causal and analytic checks.

Three questions, each answered on the held-out release cohort (the patients whose factual
Trajectory table was written), never on the data the checker was fitted to:

1. **Recovery.** An inverse network, trained on freshly simulated patients from the same
   generator, reads only what a clinic observes (scan-day measured diameters, the day, and
   death or recovery) and recovers each patient's generating parameters (log growth rate,
   log radiosensitivity alpha, chemo sensitivity beta_c) as a Gaussian-mixture posterior,
   the patient type, and the unobserved daily treatments of the historical policy. The
   latents named in ``verify.thresholds.identifiable`` must be recovered better than the
   prior: if a release's observations carried no trace of them (a broken engine, a mix-up of
   patient rows, a constant column), recovery collapses to the prior. The others are
   reported as findings (in geng2017 beta_c and the patient type leave no measurable trace
   in the scans). Every parameter's posterior must be calibrated, identifiable or not: where
   the scans say nothing, the posterior has to fall back to the prior, not to a confident
   guess. Treatment inference must rank treated days above untreated ones (AUROC).
2. **Causal relations.** With common random numbers, more treatment can never leave a
   bigger tumour: for every patient and day, volume(chemo + radio) <= volume(chemo) <=
   volume(none) and volume(chemo + radio) <= volume(radio) <= volume(none).
3. **Analytic solution.** Untreated and noise-free, the engine must follow the Gompertz
   solution exactly (``compat='none'``) or within the explicit Euler scheme's error bound
   (``compat='reference'``).

The science takes tensors, a Config and a data frame and returns data frames; files are read
and written by the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from oncobench import engine
from oncobench.config import Config, Schedule
from oncobench.models import geng2017 as g
from oncobench.schemas import STATUSES

PARAMETERS = ("log_growth_rate_per_day", "log_radio_alpha_per_gy", "chemo_beta_c")
TREATMENTS = ("chemo", "radio")
N_TYPES = 3
# The latent name of the patient type in ``verify.thresholds.identifiable``.
PATIENT_TYPE = "patient_type"
# Channels of the observed-input tensor (rows, channel, day).
CHANNELS = ("log_diameter_obs", "observed", "followed", "dead", "recovered", "day")
# Training patients get ids from here on: disjoint from any release cohort (ids 0 .. N-1).
TRAIN_ID_OFFSET = 10**12
# Central intervals whose coverage is checked.
NOMINAL_COVERAGE = (0.5, 0.9)
# Relative tolerance of the monotonicity check (float64 rounding of equal volumes).
MONOTONICITY_RTOL = 1e-12
# Tolerances of the analytic Gompertz checks (relative volume / absolute log volume).
GOMPERTZ_RTOL = 1e-9
EULER_BOUND_ATOL = 1e-9
# Posterior of each continuous parameter: a Gaussian mixture of this many components (the
# prior of beta_c is itself a two-component mixture: patient type 3 shifts it by 4 of its SDs).
N_COMPONENTS = 3
# Component log-SDs are clamped to this range (SD from 0.7% to 12x the target's SD).
LOG_SD_RANGE = (-5.0, 2.5)
# Mixture quantiles: bisection steps on the CDF over [min(mu - 12 sd), max(mu + 12 sd)]; 64
# halvings take any such bracket below float64 resolution.
QUANTILE_SPREAD_SD = 12.0
QUANTILE_BISECTION_STEPS = 64
# Held-out R^2: percentile interval over patient resamples.
R2_BOOTSTRAP_REPLICATES = 1000
R2_INTERVAL = 0.95
# Cells of the (replicates x patients) bootstrap index held at once.
BOOTSTRAP_CHUNK_CELLS = 1_000_000
# SeedSequence key of the R^2 bootstrap (evaluation uses 0xB0075).
R2_BOOTSTRAP_KEY = 0x2EC0
# The per-day treatment head sees this many days on each side (a dose acts on the next day's
# volume; scans are days apart) through a hidden layer of this width.
LOCAL_HALF_WINDOW_DAYS = 5
LOCAL_WIDTH = 32


@dataclass(frozen=True)
class VerificationResult:
    """The verify stage's three tables (schemas VerificationCheck, RecoveryPrediction, Verdict)."""

    checks: pd.DataFrame
    predictions: pd.DataFrame
    verdict: pd.DataFrame


@dataclass(frozen=True)
class _Check:
    check: str
    subject: str
    metric: str
    value: float
    threshold: float = float("nan")
    op: str | None = None  # ">", ">=" or "<=": gated; None: reported only

    @property
    def passed(self) -> bool | None:
        if self.op is None:
            return None
        if not (math.isfinite(self.value) and math.isfinite(self.threshold)):
            return False
        if self.op == ">":
            return self.value > self.threshold
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    def reason(self) -> str:
        return f"{self.check} {self.subject} {self.metric} = {self.value:.4g} (needs {self.op} {self.threshold:.4g})"


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


# --------------------------------------------------------------------------- network
class _LocalHead(nn.Module):
    """Per-day logits from the inputs of the surrounding days: a small MLP applied to every
    window of ``2 half + 1`` days (zero-padded), written as unfold + matmul because that is
    several times faster than the equivalent stacked ``Conv1d`` on CPU."""

    def __init__(self, channels: int, half: int, width: int, out: int) -> None:
        super().__init__()
        self.half = half
        self.hidden = nn.Linear(channels * (2 * half + 1), width)
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows = F.pad(x, (self.half, self.half)).unfold(2, 2 * self.half + 1, 1)  # (rows, C, days, W)
        windows = windows.permute(0, 2, 1, 3).flatten(2)  # (rows, days, C * W)
        return self.out(F.gelu(self.hidden(windows))).permute(0, 2, 1)


@dataclass(frozen=True)
class GaussianMixture:
    """A Gaussian mixture per row and parameter: ``weight``, ``mean`` and ``sd`` are float64
    tensors of shape (rows, parameters, components); weights sum to 1 over components."""

    weight: torch.Tensor
    mean: torch.Tensor
    sd: torch.Tensor

    def mixture_mean(self) -> torch.Tensor:
        """E[X], shape (rows, parameters)."""
        return (self.weight * self.mean).sum(-1)

    def mixture_sd(self) -> torch.Tensor:
        """sqrt(Var X) by the law of total variance, shape (rows, parameters)."""
        centred = self.mean - self.mixture_mean().unsqueeze(-1)
        return (self.weight * (self.sd**2 + centred**2)).sum(-1).sqrt()

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """P(X <= x) for x of shape (rows, parameters)."""
        return (self.weight * torch.special.ndtr((x.unsqueeze(-1) - self.mean) / self.sd)).sum(-1)

    def quantile(self, q: float) -> torch.Tensor:
        """The q-quantile (0 < q < 1), shape (rows, parameters), by bisection on the CDF.

        The mixture CDF has no closed-form inverse but is continuous and increasing. Below
        every component's mean - 12 SD it is under ndtr(-12) ~ 2e-33, above every mean + 12 SD
        within 2e-33 of 1, so that bracket holds every q used here.
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile: q = {q}; expected 0 < q < 1")
        lo = (self.mean - QUANTILE_SPREAD_SD * self.sd).amin(-1)
        hi = (self.mean + QUANTILE_SPREAD_SD * self.sd).amax(-1)
        for _ in range(QUANTILE_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def central_interval(self, nominal: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The equal-tailed interval holding ``nominal`` of the probability."""
        return self.quantile(0.5 * (1.0 - nominal)), self.quantile(0.5 * (1.0 + nominal))


def _mixture_nll(y: torch.Tensor, log_weight: torch.Tensor, mean: torch.Tensor, log_sd: torch.Tensor) -> torch.Tensor:
    """Mean negative log density of y (rows, parameters) under the per-row mixtures."""
    z = (y.unsqueeze(-1) - mean) * torch.exp(-log_sd)
    log_p = log_weight - log_sd - 0.5 * z**2 - 0.5 * math.log(2.0 * math.pi)
    return -torch.logsumexp(log_p, dim=-1).mean()


class InverseNetwork(nn.Module):
    """Amortised posterior over a patient's parameters, type and daily treatments.

    A global MLP over the whole (channel x day) input gives the patient-level heads (a
    Gaussian mixture per standardised parameter, type logits) and a per-day treatment term; a
    local head over a window of days adds a per-day term, since a dose on day t shows up in
    the scans of the next few days.
    """

    def __init__(self, days: int, hidden: int, log_d_mean: float, log_d_sd: float) -> None:
        super().__init__()
        c = len(CHANNELS)
        self.days = days
        self.register_buffer("log_d_stats", torch.tensor([log_d_mean, log_d_sd], dtype=torch.float32))
        self.trunk = nn.Sequential(
            nn.Linear(c * days, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.param_head = nn.Linear(hidden, len(PARAMETERS) * 3 * N_COMPONENTS)
        self.type_head = nn.Linear(hidden, N_TYPES)
        self.treat_global = nn.Linear(hidden, len(TREATMENTS) * days)
        self.local = _LocalHead(c, LOCAL_HALF_WINDOW_DAYS, LOCAL_WIDTH, len(TREATMENTS))

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the mixture of the standardised parameters as (log weight, mean, log SD),
        each (rows, parameters, components), type logits, and per-day treatment logits
        (rows, 2, days)."""
        mean, sd = self.log_d_stats[0], self.log_d_stats[1]
        seen = x[:, 1:2]
        x = torch.cat([(x[:, :1] - mean) / sd * seen, x[:, 1:]], dim=1)
        h = self.trunk(x.flatten(1))
        p = self.param_head(h).view(-1, len(PARAMETERS), 3, N_COMPONENTS)
        log_weight = F.log_softmax(p[:, :, 0], dim=-1)
        log_sd = p[:, :, 2].clamp(*LOG_SD_RANGE)
        treat = self.treat_global(h).view(-1, len(TREATMENTS), self.days) + self.local(x)
        return log_weight, p[:, :, 1], log_sd, self.type_head(h), treat


@dataclass(frozen=True)
class _Fitted:
    net: InverseNetwork
    target_mean: torch.Tensor  # (len(PARAMETERS),) float64
    target_sd: torch.Tensor


def _fit(
    x: torch.Tensor,
    params: torch.Tensor,
    ptype: torch.Tensor,
    given: torch.Tensor,
    mask: torch.Tensor,
    cfg: Config,
    device: torch.device,
) -> _Fitted:
    vc = cfg.verify
    seen = x[:, 1] > 0
    log_d = x[:, 0][seen]
    t_mean = params.mean(0)
    t_sd = params.std(0).clamp_min(1e-12)
    y = ((params - t_mean) / t_sd).to(torch.float32)

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        net = InverseNetwork(x.shape[2], vc.hidden_units, float(log_d.mean()), float(log_d.std().clamp_min(1e-6))).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=vc.learning_rate, weight_decay=1e-4)
    n = x.shape[0]
    steps = vc.epochs * math.ceil(n / vc.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=vc.learning_rate, total_steps=steps, pct_start=0.1)

    xd, yd = x.to(device, torch.float32), y.to(device)
    td, gd, md = (ptype - 1).to(device), given.to(device), mask.to(device, torch.float32)
    net.train()
    for _ in range(vc.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for lo in range(0, n, vc.batch_size):
            idx = order[lo : lo + vc.batch_size]
            log_w, mu, log_sd, type_logit, treat_logit = net(xd[idx])
            nll = _mixture_nll(yd[idx], log_w, mu, log_sd)
            ce = F.cross_entropy(type_logit, td[idx])
            m = md[idx].unsqueeze(1)
            bce = (F.binary_cross_entropy_with_logits(treat_logit, gd[idx], reduction="none") * m).sum() / (
                m.sum() * len(TREATMENTS)
            ).clamp_min(1.0)
            loss = nll + ce + bce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return _Fitted(net, t_mean, t_sd)


@torch.no_grad()
def _predict(
    fitted: _Fitted, x: torch.Tensor, device: torch.device, batch: int = 4096
) -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """(posterior in the parameters' own units, type logits, treatment logits), on the CPU."""
    outs = []
    for lo in range(0, x.shape[0], batch):
        outs.append([o.cpu() for o in fitted.net(x[lo : lo + batch].to(device, torch.float32))])
    log_w, mu, log_sd, type_logit, treat_logit = (torch.cat(parts) for parts in zip(*outs))
    scale, shift = fitted.target_sd.unsqueeze(-1), fitted.target_mean.unsqueeze(-1)
    posterior = GaussianMixture(
        weight=torch.exp(log_w.double()), mean=mu.double() * scale + shift, sd=torch.exp(log_sd.double()) * scale
    )
    return posterior, type_logit, treat_logit


# --------------------------------------------------------------------------- metrics
def _f1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    tp = float((pred & truth).sum())
    fp = float((pred & ~truth).sum())
    fn = float((~pred & truth).sum())
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom > 0 else float("nan")


def _auroc(score: torch.Tensor, truth: torch.Tensor) -> float:
    """Area under the ROC curve (ties counted half); NaN with one class only."""
    if bool(truth.all()) or not bool(truth.any()):
        return float("nan")
    return float(roc_auc_score(truth.numpy(), score.double().numpy()))


def _r2(true: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """1 - SSE/SST along the last axis; NaN where the truth is constant."""
    sst = ((true - true.mean(-1, keepdims=True)) ** 2).sum(-1)
    sse = ((true - mean) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def _r2_interval(true: np.ndarray, mean: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile interval of each column's R^2 over ``R2_BOOTSTRAP_REPLICATES`` resamples
    of the rows (patients); all columns share the resamples. Shapes (rows, k) -> (k,), (k,)."""
    n = true.shape[0]
    gen = np.random.default_rng(np.random.SeedSequence([seed, R2_BOOTSTRAP_KEY]))
    chunk = max(1, BOOTSTRAP_CHUNK_CELLS // max(n, 1))
    dist = []
    for lo in range(0, R2_BOOTSTRAP_REPLICATES, chunk):
        idx = gen.integers(0, n, size=(min(chunk, R2_BOOTSTRAP_REPLICATES - lo), n))
        dist.append(_r2(true[idx].transpose(0, 2, 1), mean[idx].transpose(0, 2, 1)))  # (replicates, k)
    alpha = 0.5 * (1.0 - R2_INTERVAL)
    lo_q, hi_q = np.nanquantile(np.concatenate(dist), [alpha, 1.0 - alpha], axis=0)
    return lo_q, hi_q


def _not_gated(name: str, what: str) -> str:
    return f"{name} (not in verify.thresholds.identifiable: {what} reported, not gated)"


def _recovery_checks(true: torch.Tensor, posterior: GaussianMixture, cfg: Config) -> list[_Check]:
    """R^2 of the posterior mean with its patient-bootstrap interval, NRMSE and mean posterior
    SD; gated (interval's lower end > ``r2_min``) for the identifiable parameters only."""
    th = cfg.verify.thresholds
    t = true.numpy().T  # (parameters, rows)
    m = posterior.mixture_mean().numpy().T
    s = posterior.mixture_sd().numpy().T
    r2 = _r2(t, m)
    ci_low, ci_high = _r2_interval(t.T, m.T, cfg.seed)
    out: list[_Check] = []
    for j, name in enumerate(PARAMETERS):
        gated = name in th.identifiable
        sd_true = float(t[j].std())
        out.append(_Check("recovery", name, "r2", float(r2[j])))
        gate = (th.r2_min, ">") if gated else (float("nan"), None)
        out.append(_Check("recovery", name, "r2_ci_low", float(ci_low[j]), *gate))
        out.append(_Check("recovery", name, "r2_ci_high", float(ci_high[j])))
        rmse = math.sqrt(float(((t[j] - m[j]) ** 2).mean()))
        out.append(_Check("recovery", name, "nrmse", rmse / sd_true if sd_true > 0 else float("nan")))
        out.append(_Check("recovery", name, "mean_predicted_sd_over_sd", float(s[j].mean()) / sd_true if sd_true > 0 else float("nan")))
        if not gated:
            out.append(_Check("identifiability", _not_gated(name, "R²"), "finding", float(r2[j])))
    return out


def _coverage_checks(true: torch.Tensor, posterior: GaussianMixture, cfg: Config) -> list[_Check]:
    """Fraction of true values inside each central posterior interval, for every parameter;
    gated: |coverage - nominal| <= coverage_z binomial SEs + coverage_slack."""
    th = cfg.verify.thresholds
    n = true.shape[0]
    out: list[_Check] = []
    intervals = {nominal: posterior.central_interval(nominal) for nominal in NOMINAL_COVERAGE}
    for j, name in enumerate(PARAMETERS):
        for nominal, (lo, hi) in intervals.items():
            t = true[:, j]
            cov = float(((lo[:, j] <= t) & (t <= hi[:, j])).double().mean())
            tol = th.coverage_z * math.sqrt(nominal * (1 - nominal) / n) + th.coverage_slack
            pct = round(100 * nominal)
            out.append(_Check("calibration", name, f"coverage_{pct}", cov, nominal))
            out.append(_Check("calibration", name, f"coverage_{pct}_abs_error", abs(cov - nominal), tol, "<="))
    return out


def _type_checks(ptype: torch.Tensor, type_logit: torch.Tensor, cfg: Config) -> list[_Check]:
    """Accuracy against the majority-class rate m; gated when the type is identifiable:
    accuracy > m + accuracy_z sqrt(m (1 - m) / n)."""
    th = cfg.verify.thresholds
    n = len(ptype)
    pred = type_logit.argmax(1) + 1
    acc = float((pred == ptype.cpu()).double().mean())
    majority = float(torch.bincount(ptype.cpu(), minlength=N_TYPES + 1).max()) / n
    out = [_Check("recovery", PATIENT_TYPE, "majority_class_accuracy", majority)]
    if PATIENT_TYPE in th.identifiable:
        needed = majority + th.accuracy_z * math.sqrt(majority * (1 - majority) / n)
        out.append(_Check("recovery", PATIENT_TYPE, "accuracy", acc, needed, ">"))
    else:
        out.append(_Check("recovery", PATIENT_TYPE, "accuracy", acc))
        out.append(_Check("identifiability", _not_gated(PATIENT_TYPE, "accuracy"), "finding", acc))
    return out


def auroc_check(name: str, score: torch.Tensor, truth: torch.Tensor, z: float) -> _Check:
    """AUROC of ``score`` for the boolean ``truth``, gated: AUROC > 0.5 + z SE0.

    SE0 = sqrt((n1 + n0 + 1) / (12 n1 n0)) is the standard error of the AUROC when the score
    carries no information: Hanley & McNeil (1982), "The meaning and use of the area under a
    receiver operating characteristic (ROC) curve", Radiology 143:29-36, their SE formula at
    A = 0.5 (Q1 = Q2 = 1/3); it is also the exact null SD of the Mann-Whitney statistic
    without ties. It treats the n1 positive and n0 negative (patient, day) pairs as
    independent; days of one patient are not, so SE0 understates the null spread and the gate
    is a test of signal, not a calibrated p-value.
    """
    n1, n0 = int(truth.sum()), int((~truth).sum())
    threshold = 0.5 + z * math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0)) if n1 and n0 else float("nan")
    return _Check("treatment_inference", name, "auroc", _auroc(score, truth), threshold, ">")


def _treatment_checks(given: torch.Tensor, mask: torch.Tensor, treat_logit: torch.Tensor, cfg: Config) -> list[_Check]:
    out: list[_Check] = []
    for j, name in enumerate(TREATMENTS):
        truth = given[:, j][mask] > 0.5
        score = treat_logit[:, j][mask]
        pred = score > 0.0  # probability 0.5
        p = float(truth.double().mean()) if truth.numel() else float("nan")
        out.append(_Check("treatment_inference", name, "prevalence", p))
        # F1 of always answering "given", the best F1 without information
        out.append(_Check("treatment_inference", name, "no_information_f1", 2 * p / (1 + p)))
        out.append(_Check("treatment_inference", name, "f1", _f1(pred, truth)))
        out.append(_Check("treatment_inference", name, "accuracy", float((pred == truth).double().mean())))
        out.append(auroc_check(name, score, truth, cfg.verify.thresholds.treatment_auroc_z))
    return out


# --------------------------------------------------------------------------- causal checks
def _schedule_name(kind: str, s: Schedule) -> str:
    return f"{kind}(start={s.start_day},every={s.every_days},doses={s.doses or 'all'})"


def _plan_row(s: Schedule | None, days: int) -> torch.Tensor:
    row = torch.zeros(days, dtype=torch.bool)
    if s is not None:
        row[s.days(days)] = True
    return row


def monotonicity_checks(cohort: g.Geng2017Cohort, cfg: Config, device: torch.device) -> list[_Check]:
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
    return [_Check("causal_monotonicity", f"{more} <= {less}", "violations", float(v), 0.0, "<=") for (more, less), v in violations.items()]


def gompertz_checks(
    cohort: g.Geng2017Cohort, *, seed: int, days: int, compat: str, device: torch.device
) -> list[_Check]:
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
        return [_Check("analytic_gompertz", subject, "max_relative_error", value, GOMPERTZ_RTOL, "<=")]
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
        _Check("analytic_gompertz", subject, "max_excess_over_euler_bound", float(excess.max()) if excess.numel() else 0.0, EULER_BOUND_ATOL, "<="),
        _Check("analytic_gompertz", subject, "max_abs_log_volume_error", float(err[live].max()) if live.any() else 0.0),
    ]


# --------------------------------------------------------------------------- tables
def _checks_frame(checks: list[_Check]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "check": [c.check for c in checks],
            "subject": [c.subject for c in checks],
            "metric": [c.metric for c in checks],
            "value": np.array([c.value for c in checks], dtype=np.float64),
            "threshold": np.array([c.threshold for c in checks], dtype=np.float64),
            "passed": pd.array([c.passed for c in checks], dtype="boolean"),
        }
    )


def _verdict_frame(checks: list[_Check]) -> pd.DataFrame:
    gated = [c for c in checks if c.op is not None]
    failed = [c for c in gated if not c.passed]
    return pd.DataFrame(
        {
            "verdict": ["fail" if failed else "pass"],
            "n_checks": np.array([len(gated)], dtype=np.int64),
            "n_failed": np.array([len(failed)], dtype=np.int64),
            "reasons": ["; ".join(c.reason() for c in failed)],
        }
    )


def _predictions_frame(patient_id: torch.Tensor, true: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor) -> pd.DataFrame:
    n, k = true.shape
    return pd.DataFrame(
        {
            "patient_id": np.repeat(patient_id.cpu().numpy().astype(np.int64), k),
            "parameter": np.tile(np.array(PARAMETERS, dtype=object), n),
            "true_value": true.numpy().reshape(-1),
            "predicted_mean": mean.numpy().reshape(-1),
            "predicted_sd": sd.numpy().reshape(-1),
        }
    )


# --------------------------------------------------------------------------- stage
def simulate_training_set(cfg: Config, gamma: float, device: torch.device) -> tuple[g.Geng2017Cohort, engine.Course]:
    """Fresh patients (ids from ``TRAIN_ID_OFFSET``) under the release's policy and clinic."""
    ids = TRAIN_ID_OFFSET + torch.arange(cfg.verify.train_patients, dtype=torch.int64, device=device)
    cohort = g.draw_cohort(cfg.seed, ids)
    course = engine.simulate_course(
        cohort, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat,
        treatment=engine.Policy(gamma, cfg.policy.window_days),
        observation=engine.Observation(cfg.observation.scan_every_days, cfg.observation.diameter_cv),
    )
    return cohort, course


@dataclass(frozen=True)
class _Inference:
    """The inverse network's answers on the release patients, with the truth they are scored
    against (CPU tensors)."""

    true: torch.Tensor  # (rows, len(PARAMETERS)) float64
    posterior: GaussianMixture
    patient_type: torch.Tensor  # (rows,) in {1, 2, 3}
    type_logit: torch.Tensor  # (rows, N_TYPES)
    given: torch.Tensor  # (rows, 2, days) float
    mask: torch.Tensor  # (rows, days) bool: decision days the table records
    treat_logit: torch.Tensor  # (rows, 2, days)


def _infer(
    cohort: g.Geng2017Cohort, trajectories: pd.DataFrame, cfg: Config, gamma: float, device: torch.device
) -> _Inference:
    """Train the inverse network on fresh patients and apply it to the release's table."""
    days = cfg.simulation.days
    train_cohort, course = simulate_training_set(cfg, gamma, device)
    x_train = features_from_course(course, record_every=cfg.simulation.record_every).cpu()
    given_train, mask_train = treatment_targets_from_course(course)
    fitted = _fit(
        x_train, parameter_targets(train_cohort), train_cohort.patient_type.cpu(), given_train, mask_train, cfg, device
    )
    del course

    x_eval = features_from_frame(trajectories, cohort.patient_id, days=days)
    given, mask = treatment_targets_from_frame(trajectories, cohort.patient_id, days=days)
    posterior, type_logit, treat_logit = _predict(fitted, x_eval, device)
    return _Inference(
        true=parameter_targets(cohort), posterior=posterior, patient_type=cohort.patient_type.cpu(),
        type_logit=type_logit, given=given, mask=mask, treat_logit=treat_logit,
    )


def _inference_checks(inf: _Inference, cfg: Config) -> list[_Check]:
    return (
        _recovery_checks(inf.true, inf.posterior, cfg)
        + _coverage_checks(inf.true, inf.posterior, cfg)
        + _type_checks(inf.patient_type, inf.type_logit, cfg)
        + _treatment_checks(inf.given, inf.mask, inf.treat_logit, cfg)
    )


def verify(
    cohort: g.Geng2017Cohort,
    trajectories: pd.DataFrame,
    cfg: Config,
    gamma: float,
    device: torch.device,
) -> VerificationResult:
    """Verify one confounding strength of a release: recovery, calibration, treatment
    inference on the held-out release patients, and the causal and analytic checks.

    Args:
        cohort: the release cohort (CPU tensors), whose factual table is ``trajectories``.
        trajectories: its Trajectory table for ``gamma``; inputs come from the observed
            columns only, the latent treatment columns serve as targets.
        cfg: the run configuration (``verify`` section: training budget and thresholds).
        gamma: the confounding strength the table was simulated with.
        device: where the training set is simulated and the network trained.

    Returns:
        The checks, the held-out parameter predictions (posterior mixture mean and SD) and the
        verdict ('fail' when any gated check fails, each failure named in ``reasons``).
        Gated: R^2 (lower end of its bootstrap interval) of the identifiable parameters,
        patient-type accuracy if the type is identifiable, interval coverage of every
        parameter, treatment-inference AUROC, monotonicity and the Gompertz solution.
    """
    inf = _infer(cohort, trajectories, cfg, gamma, device)
    checks = _inference_checks(inf, cfg)
    checks += monotonicity_checks(cohort, cfg, device)
    checks += gompertz_checks(cohort, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat, device=device)
    return VerificationResult(
        checks=_checks_frame(checks),
        predictions=_predictions_frame(
            cohort.patient_id, inf.true, inf.posterior.mixture_mean(), inf.posterior.mixture_sd()
        ),
        verdict=_verdict_frame(checks),
    )


__all__ = [
    "CHANNELS", "GaussianMixture", "InverseNetwork", "PARAMETERS", "TREATMENTS", "VerificationResult", "auroc_check",
    "features_from_course", "features_from_frame", "gompertz_checks", "monotonicity_checks", "parameter_targets",
    "recorded_days", "simulate_training_set", "treatment_targets_from_course", "treatment_targets_from_frame", "verify",
]
