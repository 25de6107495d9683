"""The drug axis of the NSCLC model: names, classes, standard doses, PK summaries, potencies.

The order of :data:`DRUG_NAMES` is the drug axis of every (rows, drugs) tensor and the order
of :data:`DRUG_CLASSES` the class axis (``docs/nsclc-contracts.md``, "Drug axis").

One-compartment summaries
-------------------------
Each drug is a one-compartment model with first-order elimination (:mod:`oncobench.nsclc.pkpd`),
summarised by ``half_life_h`` and ``volume_l`` for a reference adult, so its clearance is
``CL = V ln2 / t1/2``. Unless a drug's comment says otherwise the summary keeps the label's
clearance (so the AUC per dose, hence the mean concentration, is right) and the half-life that
carries exposure from one day to the next; the volume follows as ``V = CL t1/2 / ln2`` and may
differ from the label's Vss. For oral drugs V is the apparent (V/F) or IV volume; their
absolute concentrations are not used anywhere (no potency is expressed per mg/L of them).

Reference patient
-----------------
BSA 1.8 m2, weight 70 kg, creatinine clearance 90 mL/min. Per-m2 volumes and clearances are
given for BSA 1.8; carboplatin AUC 5 is 5 x (90 + 25) = 575 mg (Calvert 1989).

Normalised exposure ("intensity")
---------------------------------
For drug d, :func:`standard_mean_concentration_mg_per_l` is the cycle-average concentration
of the standard schedule in the reference patient,

    C_std = standard dose (mg) / (CL x interval) = (AUC per administration) / interval,

which is the steady-state mean concentration of a one-compartment model. The intensity on a
day is that day's mean concentration divided by C_std, so standard dosing averages intensity
1 over a cycle for every drug (for radiotherapy, 1 on each 2-Gy fraction day). Drug effects
(tumour kill, myelosuppression) are potencies per unit of intensity.

Myelosuppression potency
------------------------
``myelo_potency`` is the Friberg 2002 linear drug effect per unit of intensity:
E(day) = myelo_potency x intensity(day). For docetaxel it is derived from Friberg's slope
(brief §3.1: 8.58 per uM, MW 808 g/mol) times C_std in uM, so E(day) = slope x (the day's mean
concentration in uM): Friberg's linear effect evaluated on the daily mean concentration, exact
on average over the day because E is linear in C. The other cytotoxics are placeholders scaled
from docetaxel (see :data:`RELATIVE_MYELOTOXICITY`) and are calibrated later against brief §3.3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from oncobench.nsclc import pkpd

# Order = class axis, docs/nsclc-contracts.md.
DRUG_CLASSES: tuple[str, ...] = (
    "platinum",
    "antifolate",
    "taxane",
    "nucleoside",
    "anti_pd1",
    "anti_pdl1",
    "egfr_tki_1g",
    "egfr_tki_3g",
    "alk_tki_1g",
    "alk_tki_2g",
    "radiotherapy",
)
# Order = drug axis, docs/nsclc-contracts.md.
DRUG_NAMES: tuple[str, ...] = (
    "cisplatin",
    "carboplatin",
    "pemetrexed",
    "paclitaxel",
    "docetaxel",
    "gemcitabine",
    "pembrolizumab",
    "nivolumab",
    "atezolizumab",
    "durvalumab",
    "gefitinib",
    "erlotinib",
    "osimertinib",
    "crizotinib",
    "alectinib",
    "thoracic_rt",
)
DOSE_UNITS: tuple[str, ...] = pkpd.DOSE_UNITS
# Classes whose drugs kill dividing cells and so drive myelosuppression.
CYTOTOXIC_CLASSES: tuple[str, ...] = ("platinum", "antifolate", "taxane", "nucleoside")

REFERENCE_BSA_M2 = 1.8
REFERENCE_WEIGHT_KG = 70.0
REFERENCE_CRCL_ML_MIN = 90.0

# Friberg 2002 docetaxel ANC model, linear drug effect (brief §3.1, radivot/myelo quoting it).
FRIBERG_DOCETAXEL_SLOPE_PER_UM = 8.58
DOCETAXEL_MW_G_PER_MOL = 808.0


@dataclass(frozen=True)
class Drug:
    """One drug of the axis: its standard NSCLC dose, one-compartment PK and potencies.

    Attributes:
        name: drug name on the axis.
        drug_class: one of :data:`DRUG_CLASSES`.
        dose_unit: one of :data:`DOSE_UNITS`.
        standard_dose: standard NSCLC dose per administration, in ``dose_unit``.
        standard_interval_days: mean dosing interval of the standard schedule in days
            (21 = q3w, 1 = once daily, 0.5 = twice daily; 1 for thoracic RT fractions).
        half_life_h: one-compartment elimination half-life in hours.
        volume_l: one-compartment volume for the reference adult, L.
        cytotoxic: whether the drug drives myelosuppression.
        myelo_potency: Friberg linear drug effect per unit of intensity (0 if not cytotoxic).
        cost_gbp_per_mg: UK list price per mg (per Gy: None), None where unconfirmed.
        source: citation of the numbers above.
    """

    name: str
    drug_class: str
    dose_unit: str
    standard_dose: float
    standard_interval_days: float
    half_life_h: float
    volume_l: float
    cytotoxic: bool
    myelo_potency: float
    cost_gbp_per_mg: float | None
    source: str

    def __post_init__(self) -> None:
        if self.drug_class not in DRUG_CLASSES:
            raise ValueError(f"drug {self.name}: class {self.drug_class!r} is not in DRUG_CLASSES")
        if self.dose_unit not in DOSE_UNITS:
            raise ValueError(f"drug {self.name}: dose unit {self.dose_unit!r} is not in {DOSE_UNITS}")
        for key in ("standard_dose", "standard_interval_days", "half_life_h", "volume_l"):
            if not getattr(self, key) > 0:
                raise ValueError(f"drug {self.name}: {key} must be > 0, got {getattr(self, key)}")
        if self.cytotoxic != (self.drug_class in CYTOTOXIC_CLASSES):
            raise ValueError(f"drug {self.name}: cytotoxic must be True exactly for {CYTOTOXIC_CLASSES}")
        if self.myelo_potency < 0 or (not self.cytotoxic and self.myelo_potency != 0):
            raise ValueError(f"drug {self.name}: myelo_potency must be >= 0, and 0 when not cytotoxic")
        if self.cost_gbp_per_mg is not None and not self.cost_gbp_per_mg > 0:
            raise ValueError(f"drug {self.name}: cost_gbp_per_mg must be > 0 or None")

    @property
    def clearance_l_per_h(self) -> float:
        """One-compartment clearance V ln2 / t1/2, L/h."""
        return self.volume_l * pkpd.LN2 / self.half_life_h

    @property
    def elimination_rate_per_day(self) -> float:
        """Elimination rate constant k, 1/day."""
        return pkpd.elimination_rate_per_day(self.half_life_h)

    @property
    def decay_per_day(self) -> float:
        """Fraction of the amount left after one day, exp(-k)."""
        return pkpd.decay_per_day(self.half_life_h)


def reference_dose_mg(d: Drug) -> float:
    """The standard dose of ``d`` in mg (Gy for radiotherapy) for the reference patient.

    Args:
        d: the drug.

    Returns:
        mg per administration (BSA 1.8 m2, 70 kg, CrCl 90 mL/min).
    """
    dose = pkpd.dose_mg(
        d.dose_unit,
        torch.tensor([d.standard_dose], dtype=torch.float64),
        bsa_m2=torch.tensor([REFERENCE_BSA_M2], dtype=torch.float64),
        weight_kg=torch.tensor([REFERENCE_WEIGHT_KG], dtype=torch.float64),
        crcl_ml_min=torch.tensor([REFERENCE_CRCL_ML_MIN], dtype=torch.float64),
    )
    return float(dose.item())


def standard_mean_concentration_mg_per_l(d: Drug) -> float:
    """Cycle-average concentration of the standard schedule in the reference patient.

    ``C_std = dose_mg / (CL x interval)``, the AUC per administration over the dosing
    interval: the denominator of :func:`oncobench.nsclc.pkpd.intensity`.

    Args:
        d: the drug.

    Returns:
        C_std in mg/L (Gy/L for radiotherapy, whose "volume" is 1 L).
    """
    interval_h = d.standard_interval_days * pkpd.HOURS_PER_DAY
    return reference_dose_mg(d) / (d.clearance_l_per_h * interval_h)


def _volume_l(clearance_l_per_h: float, half_life_h: float) -> float:
    """One-compartment volume keeping a clearance and a half-life, CL t1/2 / ln2."""
    return clearance_l_per_h * half_life_h / pkpd.LN2


def _half_life_h(volume_l: float, clearance_l_per_h: float) -> float:
    """One-compartment half-life keeping a volume and a clearance, V ln2 / CL."""
    return volume_l * pkpd.LN2 / clearance_l_per_h


_ML_MIN_TO_L_H = 60.0 / 1000.0

# Placeholder myelotoxicity of each cytotoxic relative to docetaxel's potency; all are
# recalibrated against the grade >= 3 rates of brief §3.3.
#   pemetrexed: grade 3/4 neutropenia 5.3% vs 40.2% with docetaxel 75 mg/m2, head to head
#     in 2L NSCLC (Hanna 2004, JCO 22:1589; figures quoted from memory, unconfirmed).
#   the others: a rough ordering (taxane > carboplatin ~ gemcitabine > cisplatin), unconfirmed.
RELATIVE_MYELOTOXICITY: dict[str, float] = {
    "cisplatin": 0.2,
    "carboplatin": 0.3,
    "pemetrexed": 5.3 / 40.2,
    "paclitaxel": 0.5,
    "gemcitabine": 0.3,
}

_CISPLATIN = Drug(
    name="cisplatin",
    drug_class="platinum",
    dose_unit="mg_per_m2",
    # 75 mg/m2 d1 q21d (brief §2).
    standard_dose=75.0,
    standard_interval_days=21.0,
    # Free (ultrafilterable) platinum CL 285 mL/min (Kern 2000, brief §2) = 17.1 L/h, and
    # Vd 0.5 L/kg x 70 kg = 35 L (brief §2): t1/2 = 35 ln2 / 17.1 = 1.42 h. Exception to the
    # keep-the-terminal-half-life rule: the 36-h ultrafilterable terminal phase is a small tail
    # (plasma t1/2 0.3-1 h carries most of the exposure, brief §2); a one-compartment model
    # with t1/2 36 h would need V = 888 L to keep the clearance and would spread the exposure
    # over three days.
    half_life_h=_half_life_h(35.0, 285.0 * _ML_MIN_TO_L_H),
    volume_l=35.0,
    cytotoxic=True,
    myelo_potency=0.0,  # set below from docetaxel's
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="brief §2 (Kern 2000 free-Pt CL; renal drug handbook Vd); CISPLATIN label",
)

_CARBOPLATIN = Drug(
    name="carboplatin",
    drug_class="platinum",
    dose_unit="auc",
    # AUC 5 q21d (KEYNOTE-189, brief §7; brief §2 gives AUC 5-6).
    standard_dose=5.0,
    standard_interval_days=21.0,
    # Calvert: CL = GFR + 25 mL/min, 115 mL/min = 6.9 L/h for the reference patient, so the
    # model's AUC of the Calvert dose is the target AUC exactly. t1/2 3.0 h: post-distribution
    # half-life in patients with CrCl >= 60 mL/min (Gaver et al. 1988, "The disposition of
    # carboplatin in ovarian cancer patients"; PARAPLATIN USPI 2.6-5.9 h, quoted from memory).
    # V = 6.9 x 3.0 / ln2 = 29.9 L (label V 16 L, MRT 3.5 h).
    half_life_h=3.0,
    volume_l=_volume_l((REFERENCE_CRCL_ML_MIN + 25.0) * _ML_MIN_TO_L_H, 3.0),
    cytotoxic=True,
    myelo_potency=0.0,  # set below
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="Calvert 1989 (brief §2); Gaver et al. 1988; PARAPLATIN USPI",
)

_PEMETREXED = Drug(
    name="pemetrexed",
    drug_class="antifolate",
    dose_unit="mg_per_m2",
    # 500 mg/m2 d1 q21d (brief §2).
    standard_dose=500.0,
    standard_interval_days=21.0,
    # ALIMTA USPI (brief §2): CL 91.8 mL/min at CrCl 90 (= the reference patient) = 5.508 L/h,
    # t1/2 3.5 h -> V = 27.8 L. The label's Vss 16.1 L with CL 91.8 mL/min would give t1/2
    # 2.0 h; either way > 99% of the exposure falls on the day of infusion.
    half_life_h=3.5,
    volume_l=_volume_l(91.8 * _ML_MIN_TO_L_H, 3.5),
    cytotoxic=True,
    myelo_potency=0.0,  # set below
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="ALIMTA USPI (brief §2)",
)

_PACLITAXEL = Drug(
    name="paclitaxel",
    drug_class="taxane",
    dose_unit="mg_per_m2",
    # 200 mg/m2 3-h q21d with carboplatin (IPASS, brief §2); the US label's 135 mg/m2 24-h
    # schedule is not used in the trials the model reproduces.
    standard_dose=200.0,
    standard_interval_days=21.0,
    # TAXOL USPI for 175 mg/m2 3-h (brief §2): CL 12.2 L/h/m2 x 1.8 = 21.96 L/h, t1/2 20.2 h
    # -> V = 640 L (356 L/m2, inside the label's Vss 227-688 L/m2). Paclitaxel PK is
    # nonlinear (CL 17.7 at 135 mg/m2); the model is linear at the 175 mg/m2 values.
    half_life_h=20.2,
    volume_l=_volume_l(12.2 * REFERENCE_BSA_M2, 20.2),
    cytotoxic=True,
    # Placeholder, see RELATIVE_MYELOTOXICITY. Friberg's route with the DDMoRe paclitaxel WBC
    # slope 28.9 (brief §3.1; unit unconfirmed, read as per uM, MW 853.9) would give
    # 28.9 x 0.0381 uM = 1.10, 15x docetaxel's, for a different cell type (WBC), MTT (124 h)
    # and gamma (0.239), so it is not used.
    myelo_potency=0.0,  # set below
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="TAXOL USPI (brief §2); IPASS dose (brief §2)",
)

# Docetaxel one-compartment half-life 5.18 h: chosen so that the share of a dose's AUC that
# falls on the day of infusion, 1 - exp(-ln2 x 24 / t1/2) = 0.960, equals that of Friberg
# 2002's own three-compartment docetaxel PK (brief §3.1: k10 5.2, k12 1.06, k21 1.51, k13 1.26,
# k31 0.084 /h), the PK under which the myelosuppression slope was estimated (checked in
# tests/nsclc/test_pharmacology.py). The SmPC's gamma half-life 11.1 h would put only 78% on
# day 1, the USPI's 116-h tail even less.
DOCETAXEL_HALF_LIFE_H = 5.18

_DOCETAXEL_WITHOUT_POTENCY = Drug(
    name="docetaxel",
    drug_class="taxane",
    dose_unit="mg_per_m2",
    # 75 mg/m2 1-h q21d, 2L (brief §2).
    standard_dose=75.0,
    standard_interval_days=21.0,
    # CL 21 L/h/m2 x 1.8 = 37.8 L/h (Taxotere SmPC, brief §2; Friberg's PK: V1 k10 = 38.5 L/h)
    # -> V = 37.8 x 5.18 / ln2 = 282 L.
    half_life_h=DOCETAXEL_HALF_LIFE_H,
    volume_l=_volume_l(21.0 * REFERENCE_BSA_M2, DOCETAXEL_HALF_LIFE_H),
    cytotoxic=True,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="Taxotere SmPC CL (brief §2); Friberg 2002 PK and slope (brief §3.1)",
)

# Friberg slope x C_std in uM. C_std = 135 mg / (37.8 L/h x 504 h) = 7.086e-3 mg/L
# = 7.086e-3 / 808 x 1000 = 8.770e-3 uM, so the potency is 8.58 x 8.770e-3 = 0.0752 per unit
# of intensity. On the day of a standard dose the intensity is 21 x 0.960 = 20.2, i.e.
# E = 1.52 (Friberg's linear model lets E exceed 1; see toxicity.friberg_step's cap).
DOCETAXEL_MYELO_POTENCY = (
    FRIBERG_DOCETAXEL_SLOPE_PER_UM
    * standard_mean_concentration_mg_per_l(_DOCETAXEL_WITHOUT_POTENCY)
    / DOCETAXEL_MW_G_PER_MOL
    * 1000.0
)
_DOCETAXEL = replace(_DOCETAXEL_WITHOUT_POTENCY, myelo_potency=DOCETAXEL_MYELO_POTENCY)

_GEMCITABINE = Drug(
    name="gemcitabine",
    drug_class="nucleoside",
    dose_unit="mg_per_m2",
    # 1250 mg/m2 d1,8 q21d with cisplatin (brief §2; GEMZAR USPI): two doses per 21 days, a
    # mean interval of 10.5 days.
    standard_dose=1250.0,
    standard_interval_days=10.5,
    # GEMZAR USPI: V 50 L/m2 for infusions < 70 min (x 1.8 = 90 L); t1/2 42-94 min by age and
    # sex, 1.0 h taken (unconfirmed which value suits the NSCLC population). Exposure is
    # normalised, so only the day split matters, and it is ~100% on the day of infusion for
    # any half-life in the label's range. The long-lived intracellular triphosphate is not
    # modelled.
    half_life_h=1.0,
    volume_l=50.0 * REFERENCE_BSA_M2,
    cytotoxic=True,
    myelo_potency=0.0,  # set below
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="GEMZAR USPI",
)

_PEMBROLIZUMAB = Drug(
    name="pembrolizumab",
    drug_class="anti_pd1",
    dose_unit="mg",
    # 200 mg q3w (brief §2).
    standard_dose=200.0,
    standard_interval_days=21.0,
    # KEYTRUDA USPI (brief §2): t1/2 22 d, Vss 6.0 L; implied CL 189 mL/day vs the label's
    # steady-state 195 mL/day (3% apart).
    half_life_h=22.0 * 24.0,
    volume_l=6.0,
    cytotoxic=False,
    myelo_potency=0.0,
    # £2,630 per 100 mg vial -> £5,260 per 200 mg (BNF Mar 2021, NICE TA709; brief §6).
    cost_gbp_per_mg=5260.0 / 200.0,
    source="KEYTRUDA USPI (brief §2); NICE TA709 (brief §6)",
)

_NIVOLUMAB = Drug(
    name="nivolumab",
    drug_class="anti_pd1",
    dose_unit="mg_per_kg",
    # 3 mg/kg q2w (brief §2, "Others used in trials").
    standard_dose=3.0,
    standard_interval_days=14.0,
    # OPDIVO USPI: t1/2 25 d, Vss 6.8 L (6.6 L in the Swiss label); CLss 7.9 mL/h agrees.
    half_life_h=25.0 * 24.0,
    volume_l=6.8,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="OPDIVO USPI",
)

_ATEZOLIZUMAB = Drug(
    name="atezolizumab",
    drug_class="anti_pdl1",
    dose_unit="mg",
    # 1200 mg q3w (brief §2).
    standard_dose=1200.0,
    standard_interval_days=21.0,
    # TECENTRIQ USPI: t1/2 27 d, Vss 6.9 L (CL 0.20 L/day; implied 0.18 L/day).
    half_life_h=27.0 * 24.0,
    volume_l=6.9,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="TECENTRIQ USPI",
)

_DURVALUMAB = Drug(
    name="durvalumab",
    drug_class="anti_pdl1",
    dose_unit="mg_per_kg",
    # 10 mg/kg q2w up to 12 months (PACIFIC; brief §2).
    standard_dose=10.0,
    standard_interval_days=14.0,
    # IMFINZI USPI: terminal t1/2 ~18 d, Vss 5.64 L (both quoted from memory, unconfirmed).
    half_life_h=18.0 * 24.0,
    volume_l=5.64,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="IMFINZI USPI (unconfirmed)",
)

_GEFITINIB = Drug(
    name="gefitinib",
    drug_class="egfr_tki_1g",
    dose_unit="mg",
    # 250 mg once daily (brief §2).
    standard_dose=250.0,
    standard_interval_days=1.0,
    # IRESSA USPI: t1/2 41 h after oral dosing in patients (quoted from memory, unconfirmed;
    # ~48 h after IV), Vss 1400 L after IV.
    half_life_h=41.0,
    volume_l=1400.0,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="IRESSA USPI",
)

_ERLOTINIB = Drug(
    name="erlotinib",
    drug_class="egfr_tki_1g",
    dose_unit="mg",
    # 150 mg once daily (brief §2).
    standard_dose=150.0,
    standard_interval_days=1.0,
    # Lu 2006 (Clin Pharmacol Ther 80:136) popPK as in the TARCEVA USPI: median t1/2 36.2 h,
    # V/F 233 L (CL/F 3.95 L/h; implied 4.5 L/h).
    half_life_h=36.2,
    volume_l=233.0,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="TARCEVA USPI; Lu 2006",
)

_OSIMERTINIB = Drug(
    name="osimertinib",
    drug_class="egfr_tki_3g",
    dose_unit="mg",
    # 80 mg once daily (brief §2).
    standard_dose=80.0,
    standard_interval_days=1.0,
    # TAGRISSO USPI t1/2 48 h; Brown 2017 Vc/F 986 L (implied CL/F 14.2 L/h, as published).
    half_life_h=48.0,
    volume_l=986.0,
    cytotoxic=False,
    myelo_potency=0.0,
    # £5,770 per 30 x 80 mg (BNF Mar 2019, NICE TA621; brief §6): £2.40/mg, £4,040 per 21 days.
    cost_gbp_per_mg=5770.0 / (30.0 * 80.0),
    source="TAGRISSO USPI; Brown 2017 (brief §2); NICE TA621 (brief §6)",
)

_CRIZOTINIB = Drug(
    name="crizotinib",
    drug_class="alk_tki_1g",
    dose_unit="mg",
    # 250 mg twice daily (brief §2).
    standard_dose=250.0,
    standard_interval_days=0.5,
    # XALKORI USPI: apparent terminal t1/2 42 h after a single dose, Vss 1772 L after IV. PK is
    # nonlinear (CL/F falls from 100 to ~60 L/h with repeated dosing); not modelled.
    half_life_h=42.0,
    volume_l=1772.0,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="XALKORI USPI",
)

_ALECTINIB = Drug(
    name="alectinib",
    drug_class="alk_tki_2g",
    dose_unit="mg",
    # 600 mg twice daily with food (brief §2).
    standard_dose=600.0,
    standard_interval_days=0.5,
    # ALECENSA USPI (brief §2): t1/2 33 h, Vd 4016 L (implied CL/F 84 L/h; CL/F unconfirmed).
    half_life_h=33.0,
    volume_l=4016.0,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,  # unconfirmed (brief §6)
    source="ALECENSA USPI (brief §2)",
)

# Radiotherapy acts on the day given: a 0.01-h "half-life" makes the one-day decay factor 0
# in float64, so a fraction's whole effect falls on its day and nothing carries over; the
# "volume" is 1 L so intensity = Gy / 2 Gy on a fraction day.
RADIOTHERAPY_HALF_LIFE_H = 0.01

_THORACIC_RT = Drug(
    name="thoracic_rt",
    drug_class="radiotherapy",
    dose_unit="gy",
    # 60 Gy / 30 x 2 Gy (RTOG 0617 60-Gy arm, brief §2); one fraction per treatment day.
    standard_dose=2.0,
    standard_interval_days=1.0,
    half_life_h=RADIOTHERAPY_HALF_LIFE_H,
    volume_l=1.0,
    cytotoxic=False,
    myelo_potency=0.0,
    cost_gbp_per_mg=None,
    source="brief §2 (Thoracic RT)",
)


def _with_relative_potency(d: Drug) -> Drug:
    """``d`` with its placeholder potency, RELATIVE_MYELOTOXICITY x docetaxel's."""
    return replace(d, myelo_potency=RELATIVE_MYELOTOXICITY[d.name] * DOCETAXEL_MYELO_POTENCY)


DRUGS: dict[str, Drug] = {
    d.name: d
    for d in (
        _with_relative_potency(_CISPLATIN),
        _with_relative_potency(_CARBOPLATIN),
        _with_relative_potency(_PEMETREXED),
        _with_relative_potency(_PACLITAXEL),
        _DOCETAXEL,
        _with_relative_potency(_GEMCITABINE),
        _PEMBROLIZUMAB,
        _NIVOLUMAB,
        _ATEZOLIZUMAB,
        _DURVALUMAB,
        _GEFITINIB,
        _ERLOTINIB,
        _OSIMERTINIB,
        _CRIZOTINIB,
        _ALECTINIB,
        _THORACIC_RT,
    )
}
assert tuple(DRUGS) == DRUG_NAMES, "DRUGS must follow the contract's drug axis"


def drug(name: str) -> Drug:
    """The drug called ``name``.

    Args:
        name: a name in :data:`DRUG_NAMES`.

    Returns:
        Its :class:`Drug`.

    Raises:
        KeyError: ``name`` is not on the drug axis.
    """
    try:
        return DRUGS[name]
    except KeyError:
        raise KeyError(f"unknown drug {name!r}; valid drugs: {', '.join(DRUG_NAMES)}") from None


def class_of_drug(device: torch.device | str | None = None) -> Tensor:
    """Index in :data:`DRUG_CLASSES` of each drug's class, in drug-axis order.

    Args:
        device: where to put the tensor (default CPU).

    Returns:
        (drugs,) int64.
    """
    index = [DRUG_CLASSES.index(DRUGS[n].drug_class) for n in DRUG_NAMES]
    return torch.tensor(index, dtype=torch.int64, device=device)


@dataclass(frozen=True)
class DrugAxisPK:
    """Per-drug PK constants as (drugs,) tensors in drug-axis order, for a daily simulator.

    Attributes:
        volume_l: one-compartment volume, L (float64).
        elimination_rate_per_day: k, 1/day (float64).
        decay_per_day: exp(-k) (float64).
        standard_mean_concentration_mg_per_l: C_std, mg/L (float64).
        myelo_potency: Friberg effect per unit of intensity (float64).
        cytotoxic: whether the drug drives myelosuppression (bool).
    """

    volume_l: Tensor
    elimination_rate_per_day: Tensor
    decay_per_day: Tensor
    standard_mean_concentration_mg_per_l: Tensor
    myelo_potency: Tensor
    cytotoxic: Tensor


def drug_axis_pk(device: torch.device | str | None = None) -> DrugAxisPK:
    """The PK constants of every drug as tensors on ``device``.

    Args:
        device: where to put the tensors (default CPU).

    Returns:
        A :class:`DrugAxisPK`.
    """
    drugs = [DRUGS[n] for n in DRUG_NAMES]

    def column(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float64, device=device)

    return DrugAxisPK(
        volume_l=column([d.volume_l for d in drugs]),
        elimination_rate_per_day=column([d.elimination_rate_per_day for d in drugs]),
        decay_per_day=column([d.decay_per_day for d in drugs]),
        standard_mean_concentration_mg_per_l=column([standard_mean_concentration_mg_per_l(d) for d in drugs]),
        myelo_potency=column([d.myelo_potency for d in drugs]),
        cytotoxic=torch.tensor([d.cytotoxic for d in drugs], dtype=torch.bool, device=device),
    )


def doses_mg(amounts: Tensor, *, bsa_m2: Tensor, weight_kg: Tensor, crcl_ml_min: Tensor) -> Tensor:
    """Convert (rows, drugs) regimen amounts, each in its drug's unit, into mg (Gy for RT).

    Args:
        amounts: (rows, drugs) amount of each drug in its ``dose_unit``.
        bsa_m2: (rows,) body-surface area, m2.
        weight_kg: (rows,) weight, kg.
        crcl_ml_min: (rows,) creatinine clearance, mL/min.

    Returns:
        (rows, drugs) float64 doses in mg.
    """
    columns = [
        pkpd.dose_mg(DRUGS[n].dose_unit, amounts[:, j], bsa_m2=bsa_m2, weight_kg=weight_kg, crcl_ml_min=crcl_ml_min)
        for j, n in enumerate(DRUG_NAMES)
    ]
    return torch.stack(columns, dim=1)
