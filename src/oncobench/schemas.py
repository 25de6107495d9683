"""One pandera schema per artifact. Every Parquet read and write goes through ``oncobench.io``.

Schemas are strict (no extra columns) and inherit from small keys, so a column means the
same thing in every table.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

STATUSES = ["alive", "dead", "recovered"]
STAGES = ["I", "II", "IIIA", "IIIB", "IV"]


class _Strict(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False


class PatientKey(_Strict):
    patient_id: Series[int] = pa.Field(ge=0)


class Cohort(PatientKey):
    """One row per patient: covariates and the mechanistic parameters that generated them."""

    stage: Series[str] = pa.Field(isin=STAGES)
    patient_type: Series[int] = pa.Field(isin=[1, 2, 3])
    difficulty_tier: Series[int] = pa.Field(isin=[1, 2, 3])
    initial_diameter_cm: Series[float] = pa.Field(ge=0.3, le=13.0)
    initial_volume_cm3: Series[float] = pa.Field(gt=0)
    growth_rate_per_day: Series[float] = pa.Field(gt=0)
    radio_alpha_per_gy: Series[float] = pa.Field(gt=0)
    radio_beta_per_gy2: Series[float] = pa.Field(gt=0)
    chemo_beta_c: Series[float]
    carrying_capacity_cm3: Series[float] = pa.Field(gt=0)

    @pa.dataframe_check
    def unique_patients(cls, df) -> bool:  # noqa: N805
        return bool(df["patient_id"].is_unique)


class Trajectory(PatientKey):
    """One row per patient and recorded day: true latent state and what the clinic observed.

    ``status`` is categorical (a dictionary column in Parquet): the largest table checks its
    values through the dtype instead of per row.
    """

    day: Series[int] = pa.Field(ge=0)
    active: Series[bool]
    status: Series[pd.CategoricalDtype] = pa.Field(dtype_kwargs={"categories": STATUSES, "ordered": False})
    volume_cm3: Series[float] = pa.Field(ge=0)
    diameter_cm: Series[float] = pa.Field(ge=0)
    chemo_concentration: Series[float] = pa.Field(ge=0)
    radio_dose_gy: Series[float] = pa.Field(ge=0)
    chemo_given: Series[bool]
    radio_given: Series[bool]
    scanned: Series[bool]
    diameter_obs_cm: Series[float] = pa.Field(ge=0, nullable=True)


class RegimenOutcome(PatientKey):
    """Each patient x regimen x replicate x horizon: the counterfactual ground truth."""

    regimen: Series[str]
    replicate: Series[int] = pa.Field(ge=0)
    horizon_day: Series[int] = pa.Field(ge=1)
    volume_cm3: Series[float] = pa.Field(ge=0)
    status: Series[str] = pa.Field(isin=STATUSES)
    chemo_doses: Series[int] = pa.Field(ge=0)
    radio_dose_gy: Series[float] = pa.Field(ge=0)
    died: Series[bool]
    death_day: Series[float] = pa.Field(ge=0, nullable=True)
    recovered: Series[bool]
    recovery_day: Series[float] = pa.Field(ge=0, nullable=True)


class _BranchStart(PatientKey):
    patient_type: Series[int] = pa.Field(isin=[1, 2, 3])
    volume_cm3: Series[float] = pa.Field(ge=0)
    chemo_concentration_prev: Series[float] = pa.Field(ge=0)
    is_factual: Series[bool]


class OneStep(_BranchStart):
    """Each test patient x day x treatment combination: the next day's volume (common noise)."""

    day: Series[int] = pa.Field(ge=0)
    chemo: Series[bool]
    radio: Series[bool]
    volume_next_cm3: Series[float] = pa.Field(ge=0)
    status_next: Series[str] = pa.Field(isin=STATUSES)


class TauStep(_BranchStart):
    """Each test patient x start day x treatment sequence x tau: the volume tau days later."""

    start_day: Series[int] = pa.Field(ge=0)
    sequence: Series[int] = pa.Field(ge=0)
    chemo_plan: Series[str] = pa.Field(str_matches=r"^[01]+$")
    radio_plan: Series[str] = pa.Field(str_matches=r"^[01]+$")
    tau: Series[int] = pa.Field(ge=1)
    volume_tau_cm3: Series[float] = pa.Field(ge=0)
    status_tau: Series[str] = pa.Field(isin=STATUSES)


class VerificationCheck(_Strict):
    """One verification check result; ``passed`` is null for figures reported without a gate."""

    check: Series[str]
    subject: Series[str]
    metric: Series[str]
    value: Series[float] = pa.Field(nullable=True)
    threshold: Series[float] = pa.Field(nullable=True)
    passed: Series[pa.BOOL] = pa.Field(nullable=True)


class RecoveryPrediction(PatientKey):
    """Held-out patients: true parameter, posterior mean and SD from the inverse network."""

    parameter: Series[str]
    true_value: Series[float]
    predicted_mean: Series[float]
    predicted_sd: Series[float] = pa.Field(ge=0)


class VerificationParameter(_Strict):
    """Per latent parameter: identifiability (posterior contraction, NRMSE, z-scores, R^2 on
    held-out simulations) and SBC (rank KS and chi-square p-values, prior-vs-DAP C2ST)."""

    parameter: Series[str]
    prior_sd: Series[float] = pa.Field(ge=0)
    posterior_sd: Series[float] = pa.Field(ge=0)
    contraction: Series[float]
    partial_contraction: Series[float]
    nrmse: Series[float] = pa.Field(ge=0)
    z_mean: Series[float]
    z_sd: Series[float] = pa.Field(ge=0)
    r2: Series[float]
    sbc_ks_p: Series[float] = pa.Field(ge=0, le=1)
    sbc_chi2_p: Series[float] = pa.Field(ge=0, le=1)
    dap_c2st: Series[float] = pa.Field(ge=0, le=1)
    identifiable_required: Series[bool]


class SbcRank(_Strict):
    """Rank of each held-out simulation's true parameter among its posterior draws."""

    parameter: Series[str]
    test_index: Series[int] = pa.Field(ge=0)
    rank: Series[int] = pa.Field(ge=0)
    n_samples: Series[int] = pa.Field(ge=1)


class CoverageCurve(_Strict):
    """HPD expected coverage: empirical against nominal level, per posterior (the trained one
    and the over-confident control)."""

    level: Series[float] = pa.Field(gt=0, lt=1)
    empirical: Series[float] = pa.Field(ge=0, le=1)
    se: Series[float] = pa.Field(ge=0)
    n: Series[int] = pa.Field(ge=1)
    posterior: Series[str]


class TarpCurve(_Strict):
    alpha: Series[float] = pa.Field(ge=0, le=1)
    ecp: Series[float] = pa.Field(ge=0, le=1)


class RealismNull(_Strict):
    """The realism C2ST accuracy and its permutation-null draws, with the analytic gate."""

    subject: Series[str]
    kind: Series[str] = pa.Field(isin=["observed", "permutation"])
    accuracy: Series[float] = pa.Field(ge=0, le=1)
    threshold: Series[float]


class VerificationControl(_Strict):
    """A negative control: expected to fail the gate; ``caught_by`` names the checks it failed."""

    control: Series[str]
    kind: Series[str] = pa.Field(isin=["posterior", "simulator"])
    expected: Series[str] = pa.Field(isin=["fail"])
    outcome: Series[str] = pa.Field(isin=["pass", "fail"])
    n_failed: Series[int] = pa.Field(ge=0)
    caught_by: Series[str]
    stages_run: Series[str]
    seconds: Series[float] = pa.Field(ge=0)


class Verdict(_Strict):
    verdict: Series[str] = pa.Field(isin=["pass", "fail", "inconclusive"])
    n_checks: Series[int] = pa.Field(ge=0)
    n_failed: Series[int] = pa.Field(ge=0)
    reasons: Series[str]


class Metric(_Strict):
    """Each model x task x confounding strength x difficulty tier x metric, with a bootstrap CI."""

    model: Series[str]
    task: Series[str]
    gamma: Series[float] = pa.Field(ge=0)
    tier: Series[str] = pa.Field(isin=["all", "1", "2", "3"])
    metric: Series[str]
    estimate: Series[float] = pa.Field(nullable=True)
    ci_low: Series[float] = pa.Field(nullable=True)
    ci_high: Series[float] = pa.Field(nullable=True)
    n: Series[int] = pa.Field(ge=0)


# ---- the precision-oncology NSCLC model (oncobench.nsclc; docs/nsclc-contracts.md) ----------
NSCLC_STAGES = ["IIIA", "IIIB", "IIIC", "IV"]
RESPONSES = ["NE", "CR", "PR", "SD", "PD"]


class NsclcCohort(PatientKey):
    """Observable covariates, genotype and biomarkers, plus the ``latent_*`` ground truth."""

    age_years: Series[float] = pa.Field(ge=18, le=100)
    sex: Series[str] = pa.Field(isin=["female", "male"])
    ecog: Series[int] = pa.Field(isin=[0, 1, 2])
    stage: Series[str] = pa.Field(isin=NSCLC_STAGES)
    histology: Series[str] = pa.Field(isin=["adenocarcinoma", "squamous"])
    smoking: Series[str] = pa.Field(isin=["never", "former", "current"])
    height_cm: Series[float] = pa.Field(gt=0)
    weight_kg: Series[float] = pa.Field(gt=0)
    bsa_m2: Series[float] = pa.Field(gt=0)
    creatinine_clearance_ml_min: Series[float] = pa.Field(gt=0)
    egfr: Series[str] = pa.Field(isin=["wild_type", "ex19del", "l858r"])
    alk: Series[bool]
    kras_g12c: Series[bool]
    pdl1_tps: Series[float] = pa.Field(ge=0, le=1)
    pdl1_group: Series[str] = pa.Field(isin=["<1%", "1-49%", ">=50%"])
    region: Series[str] = pa.Field(isin=["western", "east_asian"])
    latent_growth_rate_per_day: Series[float] = pa.Field(gt=0)
    latent_baseline_sld_mm: Series[float] = pa.Field(ge=10)
    latent_immune_responder: Series[bool]
    latent_immune_responder_with_chemotherapy: Series[bool]
    latent_immune_responder_after_progression: Series[bool]
    latent_radio_alpha_per_gy: Series[float] = pa.Field(gt=0)
    latent_anc_baseline_1e9_per_l: Series[float] = pa.Field(gt=0)
    latent_sensitivity_platinum: Series[float] = pa.Field(ge=0)
    latent_sensitivity_antifolate: Series[float] = pa.Field(ge=0)
    latent_sensitivity_taxane: Series[float] = pa.Field(ge=0)
    latent_sensitivity_nucleoside: Series[float] = pa.Field(ge=0)
    latent_sensitivity_anti_pd1: Series[float] = pa.Field(ge=0)
    latent_sensitivity_anti_pdl1: Series[float] = pa.Field(ge=0)
    latent_sensitivity_egfr_tki_1g: Series[float] = pa.Field(ge=0)
    latent_sensitivity_egfr_tki_3g: Series[float] = pa.Field(ge=0)
    latent_sensitivity_alk_tki_1g: Series[float] = pa.Field(ge=0)
    latent_sensitivity_alk_tki_2g: Series[float] = pa.Field(ge=0)


class NsclcTrajectory(PatientKey):
    """The factual course: recorded days (every ``nsclc.record_every``-th and every scan day)."""

    day: Series[int] = pa.Field(ge=0)
    regimen: Series[pd.CategoricalDtype]
    line: Series[int] = pa.Field(ge=1)
    drugs_given: Series[int] = pa.Field(ge=0)
    sld_true_mm: Series[float] = pa.Field(ge=0)
    scanned: Series[bool]
    sld_measured_mm: Series[float] = pa.Field(ge=0, nullable=True)
    recist: Series[pd.CategoricalDtype] = pa.Field(nullable=True, dtype_kwargs={"categories": RESPONSES, "ordered": False})
    anc_1e9_per_l: Series[float] = pa.Field(ge=0)


class _NsclcPatientOutcome(PatientKey):
    """Outcomes every NSCLC outcome table carries (times in days from the start of the regimen)."""

    regimen: Series[str]
    replicate: Series[int] = pa.Field(ge=0)
    pfs_days: Series[float] = pa.Field(ge=0)
    pfs_event: Series[bool]
    os_days: Series[float] = pa.Field(ge=0)
    os_event: Series[bool]
    best_response: Series[str] = pa.Field(isin=RESPONSES)
    grade3_ae: Series[bool]
    worst_grade: Series[int] = pa.Field(ge=0, le=5)
    qalys: Series[float] = pa.Field(ge=0)
    cost_gbp: Series[float] = pa.Field(ge=0)


class NsclcOutcome(_NsclcPatientOutcome):
    """Outcomes of a patient under a first-line regimen (factual or counterfactual)."""

    days_grade3plus: Series[int] = pa.Field(ge=0)
    febrile_neutropenia: Series[bool]
    treatment_death: Series[bool]
    lines_received: Series[int] = pa.Field(ge=1)


class TrialPatient(_NsclcPatientOutcome):
    """One randomised patient of one replicate of a virtual trial (times from randomisation)."""

    trial: Series[str]
    arm: Series[str]
    enrol_day: Series[float] = pa.Field(ge=0)
    crossover: Series[bool]
    grade3_ae_day: Series[float] = pa.Field(ge=0, nullable=True)  # first grade >= 3 event of the study line


class TrialSummary(_Strict):
    """Per trial x endpoint x statistic: published value, simulated mean and 95% interval, target."""

    trial: Series[str]
    calibration: Series[bool]
    endpoint: Series[str]
    statistic: Series[str]
    published: Series[float] = pa.Field(nullable=True)
    published_lower: Series[float] = pa.Field(nullable=True)
    published_upper: Series[float] = pa.Field(nullable=True)
    published_text: Series[str] = pa.Field(nullable=True)
    simulated_mean: Series[float] = pa.Field(nullable=True)
    simulated_lower: Series[float] = pa.Field(nullable=True)
    simulated_upper: Series[float] = pa.Field(nullable=True)
    share_finite: Series[float] = pa.Field(nullable=True)
    power: Series[float] = pa.Field(nullable=True)
    within_target: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    target: Series[str] = pa.Field(nullable=True)
    replicates: Series[int] = pa.Field(ge=1)


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    cls.__name__: cls
    for cls in (
        Cohort, Trajectory, RegimenOutcome, OneStep, TauStep, VerificationCheck, RecoveryPrediction, Verdict, Metric,
        VerificationParameter, SbcRank, CoverageCurve, TarpCurve, RealismNull, VerificationControl,
        NsclcCohort, NsclcTrajectory, NsclcOutcome, TrialPatient, TrialSummary,
    )
}
