"""The Geng et al. 2017 NSCLC tumour model as the causal-ML literature runs it.

Gompertz growth, log-kill chemotherapy and linear-quadratic radiotherapy, with the
confounded chemo/radio policy of the RMSN/CRN/Causal-Transformer generator. Constants cite
``shared/domain/nsclc-calibration-brief.md`` section 1.2 ("brief 1.2") and
``shared/domain/geng2017-reference-model.md`` ("ref §1").

Two dynamics share parameters and policy (``compat``):

* ``reference``: the literature's explicit update
  ``V_t = V_{t-1} (1 + rho ln(K/V_{t-1}) - beta_c C_{t-1} - (alpha d + beta d^2) + eps_t)``,
  death above 13 cm, recovery when ``U_t < exp(-V_t * 5.8e8)``, and sequence length ``t`` at
  a stop (the stop day is not an active entry).
* ``none`` (default): the exact one-day Gompertz flow ``ln(V/K) <- e^{-rho} ln(V/K)``
  followed by the log-kill and LQ surviving fraction ``exp(-beta_c C - alpha d - beta d^2)``
  and log-normal process noise ``exp(eps)``. Volumes stay positive whatever the dose (the
  reference can make one 2 Gy dose drive the factor negative, ref §3.5); recovery means
  fewer than one tumour cell (``V * 5.8e8 < 1``, not a coin flip on a clamped volume); the
  stop day is an active entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from oncobench import rng
from oncobench.rng import Stream

# brief 1.2: K is the volume of a 30 cm-diameter sphere.
CARRYING_CAPACITY_CM3 = 4.0 / 3.0 * math.pi * 15.0**3
# brief 1.2 / ref §1: death at 13 cm diameter (TUMOUR_DEATH_THRESHOLD = 1150.35 cm3).
DEATH_DIAMETER_CM = 13.0
DEATH_VOLUME_CM3 = 4.0 / 3.0 * math.pi * (DEATH_DIAMETER_CM / 2.0) ** 3
# brief 1.2: cell density 5.8e8 cells per cm3.
CELLS_PER_CM3 = 5.8e8
# brief 1.2: eps ~ N(0, 0.01^2) per day (the code comment says "5%", the SD is 0.01; ref §1).
PROCESS_NOISE_SD = 0.01
# ref §1: chemo 5.0 units per dose, 1-day half-life; radio 2.0 Gy per fraction.
CHEMO_DOSE_UNITS = 5.0
CHEMO_HALF_LIFE_DAYS = 1.0
RADIO_DOSE_GY = 2.0
# brief 1.2: alpha/beta = 10 Gy.
ALPHA_BETA_RATIO_GY = 10.0
# brief 1.2: (alpha, rho) bivariate normal, corr 0.87, redrawn until both > 0.
ALPHA_MEAN, ALPHA_SD = 0.0398, 0.168
RHO_MEAN, RHO_SD = 7.00e-5, 7.23e-3
ALPHA_RHO_CORR = 0.87
# brief 1.2: beta_c ~ N(0.028, 0.0007).
BETA_C_MEAN, BETA_C_SD = 0.028, 0.0007
# ref §1: type 1 raises alpha by 10% of its mean; type 3 raises beta_c by 10% of its mean.
TYPE_SHIFT = 0.1
# ref §1: policy sigmoid centred at D_max/2 with slope gamma / D_max, D_max = 13 cm.
POLICY_D_MAX_CM = 13.0
# brief 1.2 (Detterbeck & Gibson 2008): stage weights.
STAGES = ("I", "II", "IIIA", "IIIB", "IV")
STAGE_WEIGHTS = (1432.0, 128.0, 1306.0, 7248.0, 12840.0)
# brief 1.2: initial diameter exp(mu + sigma Z) truncated to [0.3, ub] cm per stage.
STAGE_LOG_DIAMETER = {
    "I": (1.72, 4.70, 5.0),
    "II": (1.96, 1.63, 13.0),
    "IIIA": (1.91, 9.40, 13.0),
    "IIIB": (2.76, 6.87, 13.0),
    "IV": (3.86, 8.82, 13.0),
}
DIAMETER_LOWER_CM = 0.3
# Difficulty tier by stage: 1 = I-II, 2 = IIIA-IIIB, 3 = IV (bigger tumours are treated most
# under the confounded policy, so their untreated arms are the furthest from factual data).
STAGE_TIER = (1, 1, 2, 2, 3)

STATUS_ALIVE, STATUS_DEAD, STATUS_RECOVERED = 0, 1, 2
MAX_REJECTION_ATTEMPTS = 200


@dataclass(frozen=True)
class Geng2017Cohort:
    """Per-patient draws; every tensor has shape (n,)."""

    patient_id: torch.Tensor  # int64
    stage: torch.Tensor  # int64 index into STAGES
    patient_type: torch.Tensor  # int64 in {1, 2, 3}
    initial_diameter_cm: torch.Tensor
    initial_volume_cm3: torch.Tensor
    growth_rate_per_day: torch.Tensor  # rho
    radio_alpha_per_gy: torch.Tensor
    radio_beta_per_gy2: torch.Tensor
    chemo_beta_c: torch.Tensor  # per unit of model chemo concentration
    carrying_capacity_cm3: torch.Tensor

    def take(self, index: torch.Tensor) -> "Geng2017Cohort":
        """Rows ``index`` (e.g. repeat each patient once per counterfactual arm)."""
        return Geng2017Cohort(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    def to(self, device: torch.device | str) -> "Geng2017Cohort":
        return Geng2017Cohort(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})

    @property
    def tier(self) -> torch.Tensor:
        return torch.tensor(STAGE_TIER, dtype=torch.int64, device=self.stage.device)[self.stage]

    def __len__(self) -> int:
        return int(self.patient_id.shape[0])


def diameter_cm(volume_cm3: torch.Tensor) -> torch.Tensor:
    """Diameter of a sphere of the given volume, ``2 (3V / 4 pi)^(1/3)``.

    Written with exp/log because torch's vectorised and scalar ``pow`` kernels differ in the
    last bit, which would make a patient's result depend on its position in the batch.
    """
    v = volume_cm3.clamp_min(0.0)
    out = 2.0 * torch.exp(torch.log(v * (3.0 / (4.0 * math.pi))) / 3.0)
    return torch.where(v > 0, out, torch.zeros_like(out))


def volume_cm3(diameter: torch.Tensor) -> torch.Tensor:
    """Volume of a sphere of the given diameter in cm."""
    return (math.pi / 6.0) * diameter * diameter * diameter


def draw_cohort(seed: int, patient_id: torch.Tensor) -> Geng2017Cohort:
    """Draw the patients ``patient_id`` (int64, any order) exactly as ref §1 describes.

    Each quantity comes from its own counter-based stream keyed by the patient id, so patient
    k's parameters do not depend on the cohort size, sharding or device.
    """
    pid = patient_id.to(torch.int64)
    dev = pid.device
    f64 = torch.float64

    # stage: inverse-CDF on the stage weights
    weights = torch.tensor(STAGE_WEIGHTS, dtype=f64, device=dev)
    cdf = torch.cumsum(weights, 0) / weights.sum()
    u = rng.uniform(rng.patient_keys(seed, Stream.STAGE, pid), 0)
    stage = torch.searchsorted(cdf, u.contiguous(), right=True).clamp_max(len(STAGES) - 1)

    # initial diameter: truncated log-normal by inverse CDF of the truncated standard normal
    mu = torch.tensor([STAGE_LOG_DIAMETER[s][0] for s in STAGES], dtype=f64, device=dev)[stage]
    sigma = torch.tensor([STAGE_LOG_DIAMETER[s][1] for s in STAGES], dtype=f64, device=dev)[stage]
    ub = torch.tensor([STAGE_LOG_DIAMETER[s][2] for s in STAGES], dtype=f64, device=dev)[stage]
    lo = torch.special.ndtr((math.log(DIAMETER_LOWER_CM) - mu) / sigma)
    hi = torch.special.ndtr((torch.log(ub) - mu) / sigma)
    u = rng.uniform(rng.patient_keys(seed, Stream.DIAMETER, pid), 0)
    z = torch.special.ndtri(lo + u * (hi - lo))
    d0 = torch.exp(mu + sigma * z).clamp(DIAMETER_LOWER_CM, None)
    d0 = torch.minimum(d0, ub)
    v0 = volume_cm3(d0)

    # (alpha, rho): bivariate normal, redrawn until both positive (attempt k uses counter k)
    keys = rng.patient_keys(seed, Stream.ALPHA_RHO, pid)
    alpha = torch.full_like(d0, float("nan"))
    rho = torch.full_like(d0, float("nan"))
    pending = torch.ones_like(pid, dtype=torch.bool)
    for attempt in range(MAX_REJECTION_ATTEMPTS):
        z1 = rng.normal(keys, 2 * attempt)
        z2 = rng.normal(keys, 2 * attempt + 1)  # counters 2k, 2k+1: independent words
        a = ALPHA_MEAN + ALPHA_SD * z1
        r = RHO_MEAN + RHO_SD * (ALPHA_RHO_CORR * z1 + math.sqrt(1.0 - ALPHA_RHO_CORR**2) * z2)
        accept = pending & (a > 0) & (r > 0)
        alpha = torch.where(accept, a, alpha)
        rho = torch.where(accept, r, rho)
        pending = pending & ~accept
        if not bool(pending.any()):
            break
    else:  # pragma: no cover - probability < 1e-50
        raise RuntimeError("alpha/rho rejection sampling did not converge")

    beta_c = BETA_C_MEAN + BETA_C_SD * rng.normal(rng.patient_keys(seed, Stream.CHEMO_SENSITIVITY, pid), 0)

    u = rng.uniform(rng.patient_keys(seed, Stream.PATIENT_TYPE, pid), 0)
    ptype = (torch.floor(u * 3.0).to(torch.int64) + 1).clamp(1, 3)
    alpha = torch.where(ptype == 1, alpha + TYPE_SHIFT * ALPHA_MEAN, alpha)
    beta_c = torch.where(ptype == 3, beta_c + TYPE_SHIFT * BETA_C_MEAN, beta_c)

    return Geng2017Cohort(
        patient_id=pid,
        stage=stage,
        patient_type=ptype,
        initial_diameter_cm=d0,
        initial_volume_cm3=v0,
        growth_rate_per_day=rho,
        radio_alpha_per_gy=alpha,
        radio_beta_per_gy2=alpha / ALPHA_BETA_RATIO_GY,
        chemo_beta_c=beta_c,
        carrying_capacity_cm3=torch.full_like(d0, CARRYING_CAPACITY_CM3),
    )


@dataclass(frozen=True)
class Dynamics:
    """Per-row constants of the daily update, computed once per batch."""

    log_k: torch.Tensor
    rho: torch.Tensor
    gompertz_decay: torch.Tensor  # exp(-rho): one day of the exact Gompertz flow in log space
    beta_c: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor

    @classmethod
    def of(cls, cohort: "Geng2017Cohort") -> "Dynamics":
        return cls(
            log_k=torch.log(cohort.carrying_capacity_cm3),
            rho=cohort.growth_rate_per_day,
            gompertz_decay=torch.exp(-cohort.growth_rate_per_day),
            beta_c=cohort.chemo_beta_c,
            alpha=cohort.radio_alpha_per_gy,
            beta=cohort.radio_beta_per_gy2,
        )


def grow(
    volume: torch.Tensor,
    conc: torch.Tensor,
    dose_gy: torch.Tensor,
    dyn: Dynamics,
    eps: torch.Tensor,
    compat: str,
) -> torch.Tensor:
    """One day of tumour dynamics from ``volume`` under yesterday's concentration and dose.

    Returns the new volume before the death and recovery rules (cm3). ``compat`` selects the
    literature's explicit update or the exact Gompertz flow (module docstring).
    """
    kill = dyn.beta_c * conc + (dyn.alpha + dyn.beta * dose_gy) * dose_gy
    log_v = torch.log(volume)
    if compat == "reference":
        return volume * (1.0 + dyn.rho * (dyn.log_k - log_v) - kill + eps)
    return torch.exp(dyn.log_k + (log_v - dyn.log_k) * dyn.gompertz_decay - kill + eps)


def gompertz_volume(v0: torch.Tensor, rho: torch.Tensor, k: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Analytic untreated Gompertz solution ``V(t) = K exp(ln(V0/K) e^{-rho t})`` (cm3)."""
    return k * torch.exp(torch.log(v0 / k) * torch.exp(-rho * t))


def stop_rules(
    volume: torch.Tensor, u_recovery: torch.Tensor, compat: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply death and recovery; returns (volume, died, recovered)."""
    died = volume > DEATH_VOLUME_CM3
    if compat == "reference":
        # ref §1: recovery if U < exp(-V * density); a non-positive V always recovers.
        recovered = ~died & (u_recovery < torch.exp(-volume * CELLS_PER_CM3))
    else:
        recovered = ~died & (volume * CELLS_PER_CM3 < 1.0)
    volume = torch.where(died, DEATH_VOLUME_CM3, volume)
    volume = torch.where(recovered, 0.0, volume)
    return volume, died, recovered


def policy_probability(mean_diameter_cm: torch.Tensor, gamma: float) -> torch.Tensor:
    """Treatment probability of the historical policy, ``sigmoid(gamma/D_max (Dbar - D_max/2))``.

    Written as ``1 / (1 + exp(-x))`` because torch's vectorised and scalar sigmoid kernels
    differ in the last bit.
    """
    x = (gamma / POLICY_D_MAX_CM) * (mean_diameter_cm - POLICY_D_MAX_CM / 2.0)
    return 1.0 / (1.0 + torch.exp(-x))


CHEMO_DECAY_PER_DAY = math.exp(-math.log(2.0) / CHEMO_HALF_LIFE_DAYS)
