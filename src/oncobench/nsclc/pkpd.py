"""Pharmacokinetics and radiobiology of the NSCLC model as pure tensor functions.

Body size and dosing: Mosteller body-surface area, the Calvert carboplatin formula and the
conversion of a regimen amount (mg/m2, AUC, mg, mg/kg, Gy) into the milligrams given.

Drug amounts: every drug is a one-compartment model with first-order elimination, dosed by
IV bolus at the start of a simulated day. :func:`advance_amount` steps the amount in the body
over one day exactly and returns the day's exact mean amount, so a daily simulator loses
nothing to time discretisation. Oral drugs are daily boluses too: their absorption (for
example osimertinib ka 0.24 /h, Brown 2017 via brief §2, i.e. an absorption half-life of about
3 h) is fast against the one-day step and their elimination half-lives of 1.5-2 days, so
ignoring it shifts exposure by hours within the dosing day and leaves the daily mean and the
accumulation across days essentially unchanged.

Normalised exposure ("intensity", see :mod:`oncobench.nsclc.drugs`): the day's mean
concentration divided by the cycle-average concentration of the drug's standard schedule.

Radiotherapy: the linear-quadratic model, per fraction ``S = exp(-alpha d - beta d^2)`` with
``beta = alpha / (alpha/beta)``, and the biologically effective dose
``BED = n d (1 + d / (alpha/beta))`` (brief §2 "Thoracic RT"; Geng 2017 uses alpha/beta 10,
brief §1.2).

All functions broadcast over a leading row dimension (patients x arms x replicates); tensors
are float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LN2 = math.log(2.0)
HOURS_PER_DAY = 24.0

# Calvert 1989 (brief §2): dose (mg) = target AUC (mg/mL*min) x (GFR + 25) mL/min; the 25 mL/min
# is carboplatin's non-renal clearance.
CALVERT_NONRENAL_CLEARANCE_ML_MIN = 25.0
# FDA advice quoted in brief §2: cap the GFR estimate at 125 mL/min, so the largest carboplatin
# dose is AUC x 150 mg.
CALVERT_GFR_CAP_ML_MIN = 125.0

DOSE_UNITS: tuple[str, ...] = ("mg_per_m2", "auc", "mg", "mg_per_kg", "gy")

# Geng 2017 (brief §1.2): alpha/beta = 10 Gy for NSCLC.
DEFAULT_ALPHA_BETA_GY = 10.0


def _f64(value: Tensor | float) -> Tensor:
    """``value`` as a float64 tensor (a tensor keeps its device)."""
    return torch.as_tensor(value, dtype=torch.float64)


def bsa_mosteller_m2(height_cm: Tensor, weight_kg: Tensor) -> Tensor:
    """Body-surface area by Mosteller (NEJM 1987;317:1098): sqrt(height x weight / 3600).

    Args:
        height_cm: height in cm, any shape.
        weight_kg: weight in kg, broadcastable with ``height_cm``.

    Returns:
        Body-surface area in m2.
    """
    return torch.sqrt(_f64(height_cm) * _f64(weight_kg) / 3600.0)


def calvert_dose_mg(
    target_auc: Tensor | float,
    crcl_ml_min: Tensor,
    cap_ml_min: float = CALVERT_GFR_CAP_ML_MIN,
) -> Tensor:
    """Carboplatin dose by the Calvert formula (Calvert 1989; brief §2).

    The creatinine clearance stands in for the GFR and is capped at ``cap_ml_min``
    (FDA: 125 mL/min, hence at most AUC x 150 mg).

    Args:
        target_auc: target AUC in mg/mL*min (e.g. 5).
        crcl_ml_min: creatinine clearance in mL/min, per row.
        cap_ml_min: upper limit applied to the clearance, mL/min.

    Returns:
        Dose in mg, ``AUC x (min(CrCl, cap) + 25)``.
    """
    gfr = torch.clamp(_f64(crcl_ml_min), max=cap_ml_min)
    return _f64(target_auc) * (gfr + CALVERT_NONRENAL_CLEARANCE_ML_MIN)


def dose_mg(
    unit: str,
    amount: Tensor,
    *,
    bsa_m2: Tensor,
    weight_kg: Tensor,
    crcl_ml_min: Tensor,
) -> Tensor:
    """Convert a regimen amount in ``unit`` into the amount given.

    Args:
        unit: one of :data:`DOSE_UNITS`: ``mg_per_m2`` (x BSA), ``auc`` (Calvert),
            ``mg`` (flat), ``mg_per_kg`` (x weight) or ``gy`` (radiotherapy, returned as Gy).
        amount: amount per row in ``unit``.
        bsa_m2: body-surface area per row, m2.
        weight_kg: body weight per row, kg.
        crcl_ml_min: creatinine clearance per row, mL/min.

    Returns:
        Dose per row in mg (in Gy for ``gy``).

    Raises:
        ValueError: ``unit`` is not one of :data:`DOSE_UNITS`.
    """
    amount = _f64(amount)
    if unit == "mg_per_m2":
        return amount * _f64(bsa_m2)
    if unit == "auc":
        return calvert_dose_mg(amount, crcl_ml_min)
    if unit == "mg_per_kg":
        return amount * _f64(weight_kg)
    if unit in ("mg", "gy"):
        return amount.clone()
    raise ValueError(f"unknown dose unit {unit!r}; expected one of {', '.join(DOSE_UNITS)}")


def elimination_rate_per_day(half_life_h: float) -> float:
    """First-order elimination rate constant k = ln2 x 24 / t1/2, in 1/day.

    Args:
        half_life_h: elimination half-life in hours (> 0).

    Returns:
        k in 1/day.
    """
    return LN2 * HOURS_PER_DAY / half_life_h


def decay_per_day(half_life_h: float) -> float:
    """Fraction of the amount left after one day, exp(-ln2 x 24 / t1/2).

    Args:
        half_life_h: elimination half-life in hours (> 0).

    Returns:
        The one-day decay factor in [0, 1).
    """
    return math.exp(-elimination_rate_per_day(half_life_h))


def one_compartment_concentration(
    dose_mg: Tensor | float,
    volume_l: Tensor | float,
    half_life_h: Tensor | float,
    t_h: Tensor | float,
) -> Tensor:
    """Concentration after one IV bolus into a one-compartment model: (D/V) exp(-ln2 t / t1/2).

    Args:
        dose_mg: bolus dose in mg given at t = 0.
        volume_l: volume of distribution in L.
        half_life_h: elimination half-life in hours.
        t_h: time after the bolus in hours (0 before it).

    Returns:
        Concentration in mg/L, broadcast over the arguments.
    """
    t = _f64(t_h)
    c = _f64(dose_mg) / _f64(volume_l) * torch.exp(-LN2 * t / _f64(half_life_h))
    return torch.where(t >= 0, c, torch.zeros_like(c))


def advance_amount(
    amount_mg: Tensor,
    dose_mg: Tensor,
    decay: Tensor | float,
    k_per_day: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """One day of a one-compartment model with a bolus at the start of the day.

    With ``A(t) = (a + D) exp(-k t)`` over the day, the amount at the start of the next day
    is ``(a + D) x decay`` and the mean over the day is ``(a + D)(1 - decay) / k``, both exact.

    Args:
        amount_mg: amount in the body at the start of the day, (rows, drugs), mg.
        dose_mg: bolus given at the start of the day, (rows, drugs), mg (0 = no dose).
        decay: one-day decay factor exp(-k), per drug (broadcast), see :func:`decay_per_day`.
        k_per_day: elimination rate in 1/day (> 0), per drug (broadcast), consistent with
            ``decay``.

    Returns:
        ``(amount_next_mg, mean_amount_mg)``: the amount at the start of the next day and the
        mean amount over this day, both (rows, drugs) in mg.
    """
    loaded = amount_mg + dose_mg
    decay = _f64(decay).to(loaded.device)
    k = _f64(k_per_day).to(loaded.device)
    return loaded * decay, loaded * (1.0 - decay) / k


def intensity(
    mean_amount_mg: Tensor,
    volume_l: Tensor | float,
    standard_mean_conc: Tensor | float,
) -> Tensor:
    """Normalised exposure: the day's mean concentration over the standard-schedule mean.

    Args:
        mean_amount_mg: mean amount over the day, (rows, drugs), mg.
        volume_l: volume of distribution per drug (broadcast), L.
        standard_mean_conc: cycle-average concentration of each drug's standard schedule for
            the reference patient, mg/L (see
            :func:`oncobench.nsclc.drugs.standard_mean_concentration_mg_per_l`).

    Returns:
        Intensity (dimensionless): 1 on average over a cycle of standard dosing.
    """
    dev = mean_amount_mg.device
    return mean_amount_mg / _f64(volume_l).to(dev) / _f64(standard_mean_conc).to(dev)


def lq_log_kill(
    dose_gy: Tensor | float,
    alpha_per_gy: Tensor | float,
    alpha_beta_gy: Tensor | float = DEFAULT_ALPHA_BETA_GY,
) -> Tensor:
    """Linear-quadratic log cell kill of one fraction, alpha d + (alpha / (alpha/beta)) d^2.

    Args:
        dose_gy: dose of the fraction in Gy (0 = no fraction).
        alpha_per_gy: radiosensitivity alpha in 1/Gy.
        alpha_beta_gy: alpha/beta ratio in Gy (brief §1.2: 10 for NSCLC).

    Returns:
        -ln(surviving fraction), dimensionless.
    """
    d = _f64(dose_gy)
    alpha = _f64(alpha_per_gy)
    return alpha * d + alpha / _f64(alpha_beta_gy) * d * d


def lq_surviving_fraction(
    dose_gy: Tensor | float,
    alpha_per_gy: Tensor | float,
    alpha_beta_gy: Tensor | float = DEFAULT_ALPHA_BETA_GY,
) -> Tensor:
    """Surviving fraction of one fraction, exp(-alpha d - beta d^2) (brief §2).

    Args:
        dose_gy: dose of the fraction in Gy.
        alpha_per_gy: radiosensitivity alpha in 1/Gy.
        alpha_beta_gy: alpha/beta ratio in Gy.

    Returns:
        Surviving fraction in (0, 1].
    """
    return torch.exp(-lq_log_kill(dose_gy, alpha_per_gy, alpha_beta_gy))


def bed_gy(
    n_fractions: Tensor | float,
    dose_per_fraction_gy: Tensor | float,
    alpha_beta_gy: Tensor | float = DEFAULT_ALPHA_BETA_GY,
) -> Tensor:
    """Biologically effective dose n d (1 + d / (alpha/beta)) (brief §2: 60 Gy/30 fx -> 72 Gy).

    Args:
        n_fractions: number of fractions.
        dose_per_fraction_gy: dose per fraction in Gy.
        alpha_beta_gy: alpha/beta ratio in Gy.

    Returns:
        BED in Gy.
    """
    d = _f64(dose_per_fraction_gy)
    return _f64(n_fractions) * d * (1.0 + d / _f64(alpha_beta_gy))
