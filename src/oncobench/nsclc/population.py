"""Baseline covariates, driver genotype and PD-L1 of advanced / locally advanced NSCLC.

One row per patient, the cohort columns of ``docs/nsclc-contracts.md``. Every quantity comes
from its own counter-based stream keyed by the patient id (``oncobench.rng``), so a patient's
covariates do not depend on cohort size, order, sharding or device.

Generative order (each step conditions only on the ones before it)::

    sex | region -> smoking | sex, region -> histology | smoking, region
    -> driver (EGFR / ALK / KRAS G12C / none) | histology, smoking, sex, region
    -> age | driver, region;  ECOG, stage;  height, weight | sex, region;  creatinine | sex
    -> PD-L1 TPS group | driver;  TPS within the group

Driver prevalences are a small logistic model per (region, histology) cell,
``logit p = a + b_never [never smoker] + b_female [female]``, whose odds ratios are named
constants below and whose intercept ``a`` is solved at import so that the prevalence over the
cell's own sex x smoking mix equals the cited target exactly (:func:`driver_prevalence`
reports the implied subgroup rates). EGFR, ALK and KRAS G12C are mutually exclusive: one
uniform per patient is cut at ``p_egfr``, ``p_egfr + p_alk``, ``p_egfr + p_alk + p_kras``, so
each marginal equals its target.

Citations: "brief §N" is ``/work/shared/domain/nsclc-calibration-brief.md``; **unconfirmed**
marks a value chosen without a located source; **derived** marks arithmetic on cited values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch

from oncobench import rng
from oncobench.config import ConfigError
from oncobench.rng import Stream

SEXES = ("female", "male")
STAGES = ("IIIA", "IIIB", "IIIC", "IV")
HISTOLOGIES = ("adenocarcinoma", "squamous")
SMOKING = ("never", "former", "current")
EGFR = ("wild_type", "ex19del", "l858r")
PDL1_GROUPS = ("<1%", "1-49%", ">=50%")
REGIONS = ("western", "east_asian")
ECOG_GRADES = (0, 1, 2)

COLUMNS = (
    "patient_id",
    "age_years",
    "sex",
    "ecog",
    "stage",
    "histology",
    "smoking",
    "height_cm",
    "weight_kg",
    "bsa_m2",
    "creatinine_clearance_ml_min",
    "egfr",
    "alk",
    "kras_g12c",
    "pdl1_tps",
    "pdl1_group",
    "region",
)
_CATEGORIES = {
    "sex": SEXES,
    "stage": STAGES,
    "histology": HISTOLOGIES,
    "smoking": SMOKING,
    "egfr": EGFR,
    "pdl1_group": PDL1_GROUPS,
    "region": REGIONS,
}
_FLOATS = ("age_years", "height_cm", "weight_kg", "bsa_m2", "creatinine_clearance_ml_min", "pdl1_tps")
_BOOLS = ("alk", "kras_g12c")

# --- sex -------------------------------------------------------------------------------------
# brief §5: 1L advanced NSCLC, male 53.7-53.9% (BMC Cancer 2024/2021) -> 53.8%.
# East Asia: female share 35.3% among Korean NSCLC (Cancer Commun 2017, doi
# 10.1186/s40880-017-0187-6, n=1860, "the Korean cohort" below: never
# smokers 38.0%, of whom 83.7% women, vs 5.6% women among ever smokers; derived
# 0.380*0.837 + 0.620*0.056 = 0.353). PIONEER (Shi 2014 JTO 9:154) reports 43.4% female in
# adenocarcinoma only; through smoking -> histology the model gives 45.7% female among
# east_asian adenocarcinoma (not fitted).
MALE_FRACTION = {"western": 0.538, "east_asian": 0.647}

# --- smoking (never, former, current) by region and sex ----------------------------------------
# Western never smokers: women 16%, men 10% (Siegel 2021 JAMA Oncol 7:302, 7 US registries:
# ">84% of women and 90% of men ... had ever smoked"). East Asia: P(never | female) = 0.900,
# P(never | male) = 0.096 (derived from the Korean cohort above). Former:current = 60:40 among
# ever smokers in both regions is **unconfirmed** (Siegel: half of patients aged 20-64 were
# current smokers; older patients quit more often).
_EVER_FORMER_SHARE = 0.60
_NEVER = {("western", "female"): 0.16, ("western", "male"): 0.10,
          ("east_asian", "female"): 0.900, ("east_asian", "male"): 0.096}
SMOKING_PROBABILITIES = {
    key: (p, (1.0 - p) * _EVER_FORMER_SHARE, (1.0 - p) * (1.0 - _EVER_FORMER_SHARE))
    for key, p in _NEVER.items()
}

# --- histology ---------------------------------------------------------------------------------
# brief §5: US non-squamous 57%, squamous 26%, NOS 16%; NOS is dropped and the rest
# renormalised: squamous 26/83 = 31.3%, "adenocarcinoma" (all non-squamous) 68.7% (derived),
# in both regions. Within a region, never smokers have adenocarcinoma far more often:
# 89.8% vs 44.9% (Korean cohort above) -> odds ratio 10.8 (derived), used as the conditional OR.
SQUAMOUS_FRACTION = 26.0 / 83.0
ADENO_NEVER_SMOKER_OR = (0.898 / 0.102) / (0.449 / 0.551)

# --- EGFR (ex19del / L858R) --------------------------------------------------------------------
# Targets per (region, histology) cell:
# * east_asian adenocarcinoma 51.4% (PIONEER, Shi 2014, stage IIIB/IV, brief §5);
# * east_asian all NSCLC 38.4% (China, Zhang 2016 Oncotarget 7:78985, brief §5) -> squamous
#   (0.384 - 0.687*0.514) / 0.313 = 9.9% (derived);
# * western all NSCLC 14.1% (Europe, Zhang 2016) split with Zhang's pooled adenocarcinoma :
#   non-adenocarcinoma ratio 38.0 : 11.7 -> adenocarcinoma 17.8%, squamous 5.5% (derived).
EGFR_EUROPE_ALL = 0.141
EGFR_CHINA_ALL = 0.384
EGFR_ASIAN_ADENO = 0.514
EGFR_ADENO_TO_NONADENO_RATIO = 0.380 / 0.117
# Never-smoker OR within a cell: east_asian 2.21 derived from PIONEER (never smokers 52.6%
# with 60.7% EGFR, overall 51.4% -> ever smokers 41.1%); western 3.55 = Zhang 2016's pooled
# never vs ever 49.3% vs 21.5% (crude, used as conditional: **unconfirmed**).
EGFR_NEVER_SMOKER_OR = {
    "western": (0.493 / 0.507) / (0.215 / 0.785),
    "east_asian": (0.607 / 0.393) / (0.411 / 0.589),
}
# Female OR given smoking = 1: PIONEER's multivariate analysis found sex not significant once
# smoking is adjusted for. Sex still shifts EGFR through smoking (and smoking -> histology):
# the implied east_asian adenocarcinoma rates are 59.8% (female) vs 44.4% (male) and 61.0% in
# never smokers, against PIONEER's crude 61.1%, 44.0% and 60.7% (not fitted).
EGFR_FEMALE_OR = 1.0
# ex19del : L858R = 55 : 45 among EGFR-mutant tumours (uncommon mutations folded in):
# **unconfirmed** (commonly quoted; ~45% vs ~40% of all EGFR mutations).
EGFR_EX19DEL_SHARE = 0.55

# --- ALK ---------------------------------------------------------------------------------------
# Adenocarcinoma 7.2% vs non-adenocarcinoma 2.0% (Fan 2014 PLoS One, brief §5), both regions.
# Never-smoker OR 2.94: Korean cohort above, 7.8% vs 2.8% (crude, derived). Fan's rates give a
# western overall of ~5.6%, above US real-world 2.6% (Allen 2021) and EXPRESS 3% (brief §5):
# the model follows Fan as the brief asks. ALK+ patients are ~7 years younger (brief §5).
ALK_TARGET = {"adenocarcinoma": 0.072, "squamous": 0.020}
ALK_NEVER_SMOKER_OR = (0.078 / 0.922) / (0.028 / 0.972)
ALK_AGE_SHIFT_YEARS = -7.0

# --- KRAS G12C ---------------------------------------------------------------------------------
# Western: 10-13% of advanced non-squamous (Lim 2023 Lung Cancer 184:107293, brief §5) -> 11.5%;
# squamous 2.0% (**unconfirmed**). East Asia: Asia 1.4-4.3% real world (Lim 2023; China 4.3%)
# -> adenocarcinoma 3.5%, squamous 1.0% (**unconfirmed** split; overall ~2.7%).
# Never-smoker OR 0.58: all KRAS in the Korean cohort, 5.8% vs 9.6% (derived; G12C-specific
# OR **unconfirmed**, likely lower).
KRAS_G12C_TARGET = {
    ("western", "adenocarcinoma"): 0.115,
    ("western", "squamous"): 0.020,
    ("east_asian", "adenocarcinoma"): 0.035,
    ("east_asian", "squamous"): 0.010,
}
KRAS_NEVER_SMOKER_OR = (0.058 / 0.942) / (0.096 / 0.904)

# --- PD-L1 22C3 TPS ----------------------------------------------------------------------------
# EXPRESS (Dietel 2019, n=2368, brief §5): all patients <1% 48%, 1-49% 30%, >=50% 22%;
# EGFR/ALK wild type >=50% 27%, >=1% 53% -> (47, 26, 27)%. With EXPRESS's EGFR 19% + ALK 3%
# = 22% driver-positive, the driver-positive group probabilities that reproduce the overall
# mix are (0.48 - 0.78*0.47, 0.30 - 0.78*0.26, 0.22 - 0.78*0.27) / 0.22 (derived). The
# marginal of a drawn cohort therefore equals 48/30/22 only when its EGFR+ALK share is 22%.
PDL1_OVERALL = (0.48, 0.30, 0.22)
PDL1_WILD_TYPE = (0.47, 0.26, 0.27)
PDL1_EXPRESS_DRIVER_SHARE = 0.19 + 0.03
PDL1_DRIVER_POSITIVE = tuple(
    (o - (1.0 - PDL1_EXPRESS_DRIVER_SHARE) * w) / PDL1_EXPRESS_DRIVER_SHARE
    for o, w in zip(PDL1_OVERALL, PDL1_WILD_TYPE)
)
# Within a group (**unconfirmed** shape): <1% uniform on [0, 0.01); 1-49% log-uniform on
# [0.01, 0.50) (low positive scores are the commoner); >=50% uniform on [0.50, 1.00).
PDL1_LOW_CUT, PDL1_HIGH_CUT = 0.01, 0.50

# --- age ---------------------------------------------------------------------------------------
# brief §5: 1L advanced, median 68, >=75 y 26.2%. A normal truncated to [35, 90] with
# location 68.4169 and scale 11.5392 has exactly that median and tail (derived, solved with
# scipy.stats.truncnorm; IQR 60.4-75.4, cf. 62-77 for all-stage NSCLC in brief §5). East Asia:
# median 63 (**unconfirmed**: between PIONEER's 60 for adenocarcinoma and ~67 in the Korean
# all-stage cohort), same scale, location 63.0311.
AGE_MIN_YEARS, AGE_MAX_YEARS = 35.0, 90.0
AGE_LOCATION = {"western": 68.4169, "east_asian": 63.0311}
AGE_SCALE = 11.5392

# --- ECOG --------------------------------------------------------------------------------------
# brief §4 real world (UK 1L, n=1003): 0-1 75.7%, >=2 24.3% (>=2 coded 2); ECOG 0 ~40% of
# 0-1 (trial baseline tables 37-46%, brief §4) -> (0.3028, 0.4542, 0.243) (derived).
ECOG_PROBABILITIES = (0.757 * 0.40, 0.757 * 0.60, 0.243)

# --- stage -------------------------------------------------------------------------------------
# Advanced / locally advanced population: IV 72% = distant / (distant + regional) = 57/79
# (SEER, brief §5, derived; "regional" includes some stage II, so stage III is if anything
# over-weighted); stage III split IIIA:IIIB:IIIC = 11:11:6 (**unconfirmed**).
STAGE_WEIGHTS = {"IIIA": 0.11, "IIIB": 0.11, "IIIC": 0.06, "IV": 0.72}

# --- body size and renal function ---------------------------------------------------------------
# Height N(mean, sd) cm and BMI log-normal (median, log-sd) by region and sex, **unconfirmed**
# (of the order of national survey values for adults aged 60-79).
HEIGHT_CM = {("western", "female"): (162.0, 6.5), ("western", "male"): (175.0, 7.0),
             ("east_asian", "female"): (155.0, 5.5), ("east_asian", "male"): (167.0, 6.0)}
BMI_KG_M2 = {("western", "female"): (25.0, 0.18), ("western", "male"): (25.5, 0.16),
             ("east_asian", "female"): (22.5, 0.16), ("east_asian", "male"): (22.5, 0.15)}
HEIGHT_RANGE_CM = (135.0, 210.0)
BMI_RANGE_KG_M2 = (14.0, 50.0)
# Serum creatinine log-normal: median 0.75 (female) / 0.95 (male) mg/dL, log-sd 0.20,
# clipped to [0.4, 3.0] (**unconfirmed**).
CREATININE_MG_DL = {"female": (0.75, 0.20), "male": (0.95, 0.20)}
CREATININE_RANGE_MG_DL = (0.4, 3.0)
# Cockcroft & Gault 1976 (Nephron 16:31): CrCl = (140 - age) * weight / (72 * SCr) * 0.85 if female.
CG_FEMALE_FACTOR = 0.85


@dataclass(frozen=True)
class Population:
    """Cohort covariates, one row per patient; every tensor has shape (n,).

    Categorical columns are int64 codes into the module's label tuples (``SEXES``,
    ``STAGES``, ``HISTOLOGIES``, ``SMOKING``, ``EGFR``, ``PDL1_GROUPS``, ``REGIONS``).
    """

    patient_id: torch.Tensor  # int64
    age_years: torch.Tensor
    sex: torch.Tensor  # int64 code into SEXES
    ecog: torch.Tensor  # int64 in 0..2 (2 = ECOG >= 2)
    stage: torch.Tensor  # int64 code into STAGES
    histology: torch.Tensor  # int64 code into HISTOLOGIES
    smoking: torch.Tensor  # int64 code into SMOKING
    height_cm: torch.Tensor
    weight_kg: torch.Tensor
    bsa_m2: torch.Tensor
    creatinine_clearance_ml_min: torch.Tensor
    egfr: torch.Tensor  # int64 code into EGFR
    alk: torch.Tensor  # bool
    kras_g12c: torch.Tensor  # bool
    pdl1_tps: torch.Tensor  # fraction in [0, 1]
    pdl1_group: torch.Tensor  # int64 code into PDL1_GROUPS
    region: torch.Tensor  # int64 code into REGIONS

    def __post_init__(self) -> None:
        n = self.patient_id.shape
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.shape != n:
                raise ValueError(f"Population.{f.name} must be a 1-D tensor of shape {tuple(n)}")

    def take(self, index: torch.Tensor) -> "Population":
        """Rows ``index`` (e.g. one copy of each patient per arm)."""
        return Population(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> "Population":
        return Population(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.patient_id.shape[0])

    @property
    def egfr_mutant(self) -> torch.Tensor:
        return self.egfr != EGFR.index("wild_type")

    @property
    def driver_negative(self) -> torch.Tensor:
        """EGFR and ALK wild type (the KEYNOTE-024/189 eligibility genotype)."""
        return ~self.egfr_mutant & ~self.alk


# --- calibration of the driver model (pure Python, once at import) -------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _solve_intercept(cells: list[tuple[float, float]], target: float) -> float:
    """``a`` with ``sum_i w_i sigmoid(a + offset_i) = target`` for cells ``(w_i, offset_i)``, sum w = 1."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if sum(w * _sigmoid(mid + off) for w, off in cells) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _p_never(region: str, sex: str) -> float:
    return SMOKING_PROBABILITIES[(region, sex)][0]


def _p_sex(region: str, sex: str) -> float:
    return MALE_FRACTION[region] if sex == "male" else 1.0 - MALE_FRACTION[region]


def _histology_intercept(region: str) -> float:
    """Intercept of ``logit P(squamous) = c - log(ADENO_NEVER_SMOKER_OR) [never]``."""
    p_never = sum(_p_sex(region, s) * _p_never(region, s) for s in SEXES)
    off = -math.log(ADENO_NEVER_SMOKER_OR)
    return _solve_intercept([(p_never, off), (1.0 - p_never, 0.0)], SQUAMOUS_FRACTION)


_SQ_INTERCEPT = {r: _histology_intercept(r) for r in REGIONS}


def _p_squamous(region: str, never: bool) -> float:
    return _sigmoid(_SQ_INTERCEPT[region] - (math.log(ADENO_NEVER_SMOKER_OR) if never else 0.0))


def _cell_weights(region: str, histology: str) -> dict[tuple[str, bool], float]:
    """P(sex, never | region, histology) under the sex -> smoking -> histology model."""
    joint = {}
    for s in SEXES:
        for never in (True, False):
            p_n = _p_never(region, s) if never else 1.0 - _p_never(region, s)
            p_h = _p_squamous(region, never)
            joint[(s, never)] = _p_sex(region, s) * p_n * (p_h if histology == "squamous" else 1.0 - p_h)
    total = sum(joint.values())
    return {k: v / total for k, v in joint.items()}


def _egfr_targets() -> dict[tuple[str, str], float]:
    adeno = 1.0 - SQUAMOUS_FRACTION
    west_adeno = EGFR_EUROPE_ALL / (adeno + SQUAMOUS_FRACTION / EGFR_ADENO_TO_NONADENO_RATIO)
    return {
        ("western", "adenocarcinoma"): west_adeno,
        ("western", "squamous"): west_adeno / EGFR_ADENO_TO_NONADENO_RATIO,
        ("east_asian", "adenocarcinoma"): EGFR_ASIAN_ADENO,
        ("east_asian", "squamous"): (EGFR_CHINA_ALL - adeno * EGFR_ASIAN_ADENO) / SQUAMOUS_FRACTION,
    }


EGFR_TARGET = _egfr_targets()


def _driver_spec(driver: str, region: str, histology: str) -> tuple[float, float, float]:
    """(target prevalence, log OR never smoker, log OR female) of one driver in one cell."""
    if driver == "egfr":
        target = EGFR_TARGET[(region, histology)]
        return target, math.log(EGFR_NEVER_SMOKER_OR[region]), math.log(EGFR_FEMALE_OR)
    if driver == "alk":
        return ALK_TARGET[histology], math.log(ALK_NEVER_SMOKER_OR), 0.0
    return KRAS_G12C_TARGET[(region, histology)], math.log(KRAS_NEVER_SMOKER_OR), 0.0


DRIVERS = ("egfr", "alk", "kras_g12c")


def _driver_table() -> dict[tuple[str, str, str, str, bool], float]:
    """P(driver | region, histology, sex, never smoker) for every cell, intercepts solved."""
    table = {}
    for region in REGIONS:
        for histology in HISTOLOGIES:
            weights = _cell_weights(region, histology)
            for driver in DRIVERS:
                target, b_never, b_female = _driver_spec(driver, region, histology)
                offsets = {k: b_never * k[1] + b_female * (k[0] == "female") for k in weights}
                a = _solve_intercept([(weights[k], offsets[k]) for k in weights], target)
                for k in weights:
                    table[(driver, region, histology, k[0], k[1])] = _sigmoid(a + offsets[k])
    for region in REGIONS:
        for histology in HISTOLOGIES:
            for s in SEXES:
                for never in (True, False):
                    total = sum(table[(d, region, histology, s, never)] for d in DRIVERS)
                    if total > 1.0:  # pragma: no cover - a constant edit made drivers overlap
                        raise RuntimeError(
                            f"driver probabilities sum to {total:.3f} in {region}/{histology}/{s}"
                        )
    return table


_DRIVER_TABLE = _driver_table()


def driver_prevalence(driver: str, region: str, **given: str) -> float:
    """Model prevalence of ``driver`` ('egfr', 'alk', 'kras_g12c') in ``region``, optionally
    conditional on ``histology=``, ``sex=`` and/or ``smoking=`` ('never' or 'ever').

    Exact expectation under the generative model (no sampling); used to report how the
    calibrated model matches subgroup rates it was not fitted to.
    """
    num = den = 0.0
    for s in SEXES:
        for never in (True, False):
            p_n = _p_never(region, s) if never else 1.0 - _p_never(region, s)
            for h in HISTOLOGIES:
                p_sq = _p_squamous(region, never)
                w = _p_sex(region, s) * p_n * (p_sq if h == "squamous" else 1.0 - p_sq)
                if given.get("histology", h) != h or given.get("sex", s) != s:
                    continue
                if "smoking" in given and (given["smoking"] == "never") != never:
                    continue
                num += w * _DRIVER_TABLE[(driver, region, h, s, never)]
                den += w
    return num / den


# --- drawing ---------------------------------------------------------------------------------


def _categorical(u: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: ``probs`` (rows, k) or (k,), ``u`` (rows,) uniforms -> codes."""
    cdf = torch.cumsum(probs, -1)
    cdf = cdf / cdf[..., -1:]
    if cdf.dim() == 1:
        cdf = cdf.expand(u.shape[0], -1)
    return (u.unsqueeze(-1) >= cdf[:, :-1]).sum(-1).to(torch.int64)


def _stage_probabilities(stage_weights: dict[str, float] | None) -> list[float]:
    if stage_weights is None:
        return [STAGE_WEIGHTS[s] for s in STAGES]
    for key, value in stage_weights.items():
        if key not in STAGES:
            raise ConfigError(f"stage_weights: unknown stage {key!r}; expected one of {STAGES}")
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"stage_weights[{key!r}]: expected a finite weight >= 0, got {value!r}")
    weights = [float(stage_weights.get(s, 0.0)) for s in STAGES]
    if sum(weights) <= 0:
        raise ConfigError("stage_weights: at least one stage needs a positive weight")
    return weights


def pdl1_group_of(tps: torch.Tensor) -> torch.Tensor:
    """PD-L1 group code of a TPS fraction: <1%, 1-49%, >=50% (22C3 cut-offs, brief §5)."""
    return (tps >= PDL1_LOW_CUT).to(torch.int64) + (tps >= PDL1_HIGH_CUT).to(torch.int64)


def draw_population(
    seed: int,
    patient_id: torch.Tensor,
    *,
    region: str = "western",
    stage_weights: dict[str, float] | None = None,
) -> Population:
    """Draw the covariates of patients ``patient_id`` (int64, any order, any device).

    Args:
        seed: master seed.
        patient_id: int64 ids; patient k's row depends only on (seed, k, region, stage_weights).
        region: 'western' or 'east_asian' (sets sex, smoking, age and genotype mixes).
        stage_weights: relative weights over ``STAGES`` (missing stages weigh 0); default
            ``STAGE_WEIGHTS``.

    Returns:
        A :class:`Population` on ``patient_id``'s device.
    """
    if region not in REGIONS:
        raise ConfigError(f"region: expected one of {REGIONS}, got {region!r}")
    pid = patient_id.to(torch.int64)
    dev = pid.device
    f64 = torch.float64
    n = pid.shape[0]

    def keys(stream: Stream) -> torch.Tensor:
        return rng.patient_keys(seed, stream, pid)

    def lookup(values: list[float], index: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=f64, device=dev)[index]

    # sex, smoking | sex, histology | never smoker
    male = rng.uniform(keys(Stream.NSCLC_SEX), 0) < MALE_FRACTION[region]
    sex = male.to(torch.int64)
    smoke_table = [SMOKING_PROBABILITIES[(region, s)] for s in SEXES]
    smoke_probs = torch.tensor(smoke_table, dtype=f64, device=dev)[sex]
    smoking = _categorical(rng.uniform(keys(Stream.NSCLC_SMOKING), 0), smoke_probs)
    never = smoking == SMOKING.index("never")
    p_sq = lookup([_p_squamous(region, False), _p_squamous(region, True)], never.to(torch.int64))
    histology = (rng.uniform(keys(Stream.NSCLC_HISTOLOGY), 0) < p_sq).to(torch.int64)

    # drivers: one uniform cut into EGFR | ALK | KRAS G12C | none; then the EGFR subtype
    cell = (histology * 2 + sex) * 2 + never.to(torch.int64)
    probs = []
    for d in DRIVERS:
        values = [
            _DRIVER_TABLE[(d, region, h, s, nv)] for h in HISTOLOGIES for s in SEXES for nv in (False, True)
        ]
        probs.append(lookup(values, cell))
    driver_keys = keys(Stream.NSCLC_DRIVER)
    u = rng.uniform(driver_keys, 0)
    is_egfr = u < probs[0]
    alk = ~is_egfr & (u < probs[0] + probs[1])
    kras = ~is_egfr & ~alk & (u < probs[0] + probs[1] + probs[2])
    ex19 = rng.uniform(driver_keys, 1) < EGFR_EX19DEL_SHARE
    egfr = torch.where(
        is_egfr,
        torch.where(ex19, EGFR.index("ex19del"), EGFR.index("l858r")),
        torch.full_like(pid, EGFR.index("wild_type")),
    )

    # age: truncated normal by inverse CDF, ALK+ centred 7 years younger
    mu = AGE_LOCATION[region] + ALK_AGE_SHIFT_YEARS * alk.to(f64)
    lo = torch.special.ndtr((AGE_MIN_YEARS - mu) / AGE_SCALE)
    hi = torch.special.ndtr((AGE_MAX_YEARS - mu) / AGE_SCALE)
    u = rng.uniform(keys(Stream.NSCLC_AGE), 0)
    age = (mu + AGE_SCALE * torch.special.ndtri(lo + u * (hi - lo))).clamp(AGE_MIN_YEARS, AGE_MAX_YEARS)

    ecog_p = torch.tensor(ECOG_PROBABILITIES, dtype=f64, device=dev)
    ecog = _categorical(rng.uniform(keys(Stream.NSCLC_ECOG), 0), ecog_p)
    stage_p = torch.tensor(_stage_probabilities(stage_weights), dtype=f64, device=dev)
    stage = _categorical(rng.uniform(keys(Stream.NSCLC_STAGE), 0), stage_p)

    # body size: height normal, BMI log-normal, weight = BMI * height^2
    body = keys(Stream.NSCLC_BODY_SIZE)
    h_mean = lookup([HEIGHT_CM[(region, s)][0] for s in SEXES], sex)
    h_sd = lookup([HEIGHT_CM[(region, s)][1] for s in SEXES], sex)
    height = (h_mean + h_sd * rng.normal(body, 0)).clamp(*HEIGHT_RANGE_CM)
    bmi_median = lookup([BMI_KG_M2[(region, s)][0] for s in SEXES], sex)
    bmi_sd = lookup([BMI_KG_M2[(region, s)][1] for s in SEXES], sex)
    bmi = (bmi_median * torch.exp(bmi_sd * rng.normal(body, 1))).clamp(*BMI_RANGE_KG_M2)
    height_m = height / 100.0
    weight = bmi * height_m * height_m
    bsa = torch.sqrt(height * weight / 3600.0)  # Mosteller 1987 NEJM 317:1098

    scr_median = lookup([CREATININE_MG_DL[s][0] for s in SEXES], sex)
    scr_sd = lookup([CREATININE_MG_DL[s][1] for s in SEXES], sex)
    scr = scr_median * torch.exp(scr_sd * rng.normal(keys(Stream.NSCLC_CREATININE), 0))
    scr = scr.clamp(*CREATININE_RANGE_MG_DL)
    crcl = cockcroft_gault_ml_min(age, weight, male, scr)

    # PD-L1: group | EGFR/ALK status, then TPS within the group
    pdl1_keys = keys(Stream.NSCLC_PDL1)
    group_table = torch.tensor([PDL1_WILD_TYPE, PDL1_DRIVER_POSITIVE], dtype=f64, device=dev)
    group_probs = group_table[(is_egfr | alk).to(torch.int64)]
    group = _categorical(rng.uniform(pdl1_keys, 0), group_probs)
    v = rng.uniform(pdl1_keys, 1)
    tps = torch.where(
        group == 0,
        v * PDL1_LOW_CUT,
        torch.where(
            group == 1,
            PDL1_LOW_CUT * torch.exp(v * math.log(PDL1_HIGH_CUT / PDL1_LOW_CUT)),
            PDL1_HIGH_CUT + v * (1.0 - PDL1_HIGH_CUT),
        ),
    )
    # the log-uniform's float rounding must not move a TPS across a cut-off
    tps = torch.where(group == 1, tps.clamp(PDL1_LOW_CUT, math.nextafter(PDL1_HIGH_CUT, 0.0)), tps)

    return Population(
        patient_id=pid,
        age_years=age,
        sex=sex,
        ecog=ecog,
        stage=stage,
        histology=histology,
        smoking=smoking,
        height_cm=height,
        weight_kg=weight,
        bsa_m2=bsa,
        creatinine_clearance_ml_min=crcl,
        egfr=egfr,
        alk=alk,
        kras_g12c=kras,
        pdl1_tps=tps,
        pdl1_group=group,
        region=torch.full((n,), REGIONS.index(region), dtype=torch.int64, device=dev),
    )


def cockcroft_gault_ml_min(
    age_years: torch.Tensor, weight_kg: torch.Tensor, male: torch.Tensor, serum_creatinine_mg_dl: torch.Tensor
) -> torch.Tensor:
    """Creatinine clearance in mL/min, Cockcroft & Gault 1976 (Nephron 16:31), actual body weight."""
    crcl = (140.0 - age_years) * weight_kg / (72.0 * serum_creatinine_mg_dl)
    return torch.where(male, crcl, CG_FEMALE_FACTOR * crcl)


# --- tables ----------------------------------------------------------------------------------


def _is_boolean(x: object) -> bool:
    return isinstance(x, (bool, np.bool_)) or (isinstance(x, (int, np.integer)) and x in (0, 1))


def to_frame(pop: Population) -> pd.DataFrame:
    """The cohort table: exactly ``COLUMNS``, categoricals as their labels."""
    p = pop.to("cpu")
    data = {}
    for col in COLUMNS:
        values = getattr(p, col).numpy()
        if col in _CATEGORIES:
            data[col] = np.asarray(_CATEGORIES[col], dtype=object)[values]
        elif col in _BOOLS:
            data[col] = values.astype(bool)
        else:
            data[col] = values
    return pd.DataFrame(data, columns=list(COLUMNS))


def from_frame(df: pd.DataFrame, device: torch.device | str = "cpu") -> Population:
    """Rebuild a :class:`Population` from a cohort table.

    Raises:
        ConfigError: one line naming the first missing column, or the column, row (0-based
            position) and value that is not what the contract expects.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(
            f"cohort table: missing column {missing[0]!r} (expected columns {', '.join(COLUMNS)})"
        )

    def bad(col: str, row: int, expected: str) -> ConfigError:
        got = df[col].iloc[row]
        return ConfigError(f"cohort table: column {col!r} row {row}: expected {expected}, got {got!r}")

    out: dict[str, torch.Tensor] = {}
    for col, labels in _CATEGORIES.items():
        codes = df[col].map({lab: i for i, lab in enumerate(labels)})
        wrong = np.flatnonzero(codes.isna().to_numpy())
        if wrong.size:
            raise bad(col, int(wrong[0]), f"one of {labels}")
        out[col] = torch.as_tensor(codes.to_numpy(dtype=np.int64), device=device)
    for col in ("patient_id", "ecog"):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        allowed = np.isfinite(values) & (values == np.round(values))
        if col == "ecog":
            allowed &= np.isin(values, ECOG_GRADES)
        wrong = np.flatnonzero(~allowed)
        if wrong.size:
            raise bad(col, int(wrong[0]), "an integer" if col == "patient_id" else "an integer in 0..2")
        out[col] = torch.as_tensor(values.astype(np.int64), device=device)
    for col in _FLOATS:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        allowed = np.isfinite(values) & ((values >= 0) & (values <= 1) if col == "pdl1_tps" else values > 0)
        wrong = np.flatnonzero(~allowed)
        if wrong.size:
            expected = "a fraction in [0, 1]" if col == "pdl1_tps" else "a finite number > 0"
            raise bad(col, int(wrong[0]), expected)
        out[col] = torch.as_tensor(values, dtype=torch.float64, device=device)
    for col in _BOOLS:
        series = df[col]
        ok = series.map(_is_boolean)
        wrong = np.flatnonzero(~ok.to_numpy(dtype=bool))
        if wrong.size:
            raise bad(col, int(wrong[0]), "a boolean")
        out[col] = torch.as_tensor(series.to_numpy(dtype=bool), device=device)
    mismatch = np.flatnonzero((pdl1_group_of(out["pdl1_tps"]) != out["pdl1_group"]).cpu().numpy())
    if mismatch.size:
        row = int(mismatch[0])
        raise bad("pdl1_group", row, f"the group of pdl1_tps {df['pdl1_tps'].iloc[row]!r}")
    return Population(**{col: out[col] for col in COLUMNS})
