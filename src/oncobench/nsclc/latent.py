"""Mechanistic per-patient parameters of the NSCLC model (not observed by a clinic).

Each quantity comes from its own counter-based stream keyed by patient id (``oncobench.rng``),
so a patient's latent parameters do not depend on cohort size, sharding, arm or device: the
arms of a trial and the regimens of the counterfactual table share them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields

import torch

from oncobench import rng
from oncobench.nsclc import population as popmod
from oncobench.nsclc.drugs import DRUG_CLASSES, DRUG_NAMES
from oncobench.nsclc.params import ModelParameters


class ModelStream(enum.IntEnum):
    """Random streams of the NSCLC model's latent parameters and simulation (60-89)."""

    GROWTH = 60
    BASELINE_SLD = 61
    SENSITIVITY = 62
    IMMUNE_RESPONDER = 63
    RADIO_ALPHA = 64
    ANC_BASELINE = 65
    CLEARANCE = 66
    RADIOSENSITIVE = 67
    DEATH = 70
    ADVERSE_EVENT = 71
    FEBRILE_NEUTROPENIA = 72
    NEW_LESION = 73
    SCAN = 74
    PATHWAY = 75
    ERADICATION = 76
    ALLOCATION = 77
    DROPOUT = 78
    ENROLMENT = 79


TARGETED = {
    "egfr_tki_1g": "egfr",
    "egfr_tki_3g": "egfr",
    "alk_tki_1g": "alk",
    "alk_tki_2g": "alk",
}
IMMUNE = ("anti_pd1", "anti_pdl1")
# Contexts of PD-(L)1 blockade, the column of ``Latent.immune_context_responder``:
# index = with chemotherapy (0/1) + 2 x after progression on an earlier line (0/1).
IMMUNE_CONTEXTS = (
    "monotherapy",
    "with_chemotherapy",
    "monotherapy_after_progression",
    "with_chemotherapy_after_progression",
)
# Ground-truth columns of the other contexts (the first, monotherapy before any progression, is
# ``immune_responder``): column name -> context index.
IMMUNE_CONTEXT_COLUMNS = {
    "immune_responder_with_chemotherapy": IMMUNE_CONTEXTS.index("with_chemotherapy"),
    "immune_responder_after_progression": IMMUNE_CONTEXTS.index("monotherapy_after_progression"),
}
LATENT_COLUMNS = (
    "growth_rate_per_day",
    "baseline_sld_mm",
    "immune_responder",
    *IMMUNE_CONTEXT_COLUMNS,
    "radio_alpha_per_gy",
    "anc_baseline_1e9_per_l",
    *(f"sensitivity_{c}" for c in DRUG_CLASSES if c != "radiotherapy"),
)


@dataclass(frozen=True)
class Latent:
    """Latent parameters, one row per patient.

    ``sensitivity`` (rows, classes) multiplies each class's potency; it is 0 for a targeted
    class whose target the tumour lacks. For immunotherapy it is the depth of a response; whether
    the tumour responds at all depends on the context of the line (``immune_context_responder``,
    (rows, 4) bool over :data:`IMMUNE_CONTEXTS`), and the simulator gates the class by it.
    ``immune_responder`` is the first context, PD-(L)1 blockade alone on a line not preceded by
    progression (the response KEYNOTE-024 measures; the PD-L1 gradient of its probability comes
    from KEYNOTE-001, most of whose patients were previously treated).
    """

    growth_rate_per_day: torch.Tensor
    baseline_sld_mm: torch.Tensor
    sensitivity: torch.Tensor
    immune_responder: torch.Tensor
    immune_context_responder: torch.Tensor  # (rows, len(IMMUNE_CONTEXTS))
    radio_alpha_per_gy: torch.Tensor
    anc_baseline_1e9_per_l: torch.Tensor
    clearance_multiplier: torch.Tensor  # (rows, drugs)

    def take(self, index: torch.Tensor) -> "Latent":
        return Latent(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __len__(self) -> int:
        return int(self.growth_rate_per_day.shape[0])


def _lognormal(seed: int, stream: ModelStream, pid: torch.Tensor, median: torch.Tensor, log_sd: float, counter: int = 0):
    z = rng.normal(rng.patient_keys(seed, stream, pid), counter)
    return median * torch.exp(log_sd * z)


def radiosensitive_kind(seed: int, patient_id: torch.Tensor, params: ModelParameters) -> torch.Tensor:
    """(rows,) bool: the tumour is of the radiosensitive kind (median alpha
    ``radiotherapy.radiosensitive_alpha_per_gy_median``), with probability
    ``radiotherapy.radiosensitive_share``, from the patient's RADIOSENSITIVE stream."""
    share = params.section("radiotherapy")["radiosensitive_share"]
    return rng.uniform(rng.patient_keys(seed, ModelStream.RADIOSENSITIVE, patient_id), 0) < share


def radio_alpha(seed: int, patient_id: torch.Tensor, params: ModelParameters, radiosensitive: torch.Tensor) -> torch.Tensor:
    """(rows,) float64 radiosensitivity alpha (Gy^-1): log-normal around the median of the kind
    (``radiosensitive``: the early-stage median, else Geng 2017's), the same spread and the same
    normal draw of the patient's RADIO_ALPHA stream for either kind."""
    rt = params.section("radiotherapy")
    f64 = dict(dtype=torch.float64, device=patient_id.device)
    median = torch.where(
        radiosensitive,
        torch.full(patient_id.shape, rt["radiosensitive_alpha_per_gy_median"], **f64),
        torch.full(patient_id.shape, rt["alpha_per_gy_median"], **f64),
    )
    return _lognormal(seed, ModelStream.RADIO_ALPHA, patient_id, median, rt["alpha_log_sd"])


def draw_latent(seed: int, pop: popmod.Population, params: ModelParameters) -> Latent:
    """Draw the mechanistic parameters of ``pop`` under ``params`` (brief §1, §2, §3)."""
    pid = pop.patient_id
    dev = pid.device
    f64 = torch.float64
    tumour = params.section("tumour")

    growth_by_hist = torch.tensor(
        [tumour["growth_rate_per_day"][h] for h in popmod.HISTOLOGIES], dtype=f64, device=dev
    )
    median_g = growth_by_hist[pop.histology] * tumour["advanced_growth_multiplier"]
    growth = _lognormal(seed, ModelStream.GROWTH, pid, median_g, tumour["growth_rate_log_sd"])

    sld_by_stage = torch.tensor([tumour["baseline_sld_mm"][s] for s in popmod.STAGES], dtype=f64, device=dev)
    sld0 = _lognormal(seed, ModelStream.BASELINE_SLD, pid, sld_by_stage[pop.stage], tumour["baseline_sld_log_sd"])
    # RECIST measurability: a target lesion is >= 10 mm (brief §4); trials enrol measurable disease
    sld0 = sld0.clamp(min=10.0)

    keys = rng.patient_keys(seed, ModelStream.SENSITIVITY, pid)
    sens = torch.empty((len(pid), len(DRUG_CLASSES)), dtype=f64, device=dev)
    for k, c in enumerate(DRUG_CLASSES):
        sd = params.drug_class(c)["sensitivity_log_sd"]
        sens[:, k] = torch.exp(sd * rng.normal(keys, k))  # median 1
    present = {
        "egfr": pop.egfr != popmod.EGFR.index("wild_type"),
        "alk": pop.alk.bool(),
    }
    for c, target in TARGETED.items():
        k = DRUG_CLASSES.index(c)
        sens[:, k] = torch.where(present[target], sens[:, k], torch.zeros_like(sens[:, k]))

    context = immune_context_responder(seed, pop, params)

    alpha = radio_alpha(seed, pid, params, radiosensitive_kind(seed, pid, params))
    tox = params.section("toxicity")
    anc0 = _lognormal(
        seed, ModelStream.ANC_BASELINE, pid, torch.full_like(growth, tox["anc_baseline_median"]), tox["anc_baseline_log_sd"]
    )
    cl_sd = params.section("pharmacokinetics")["clearance_log_sd"]
    keys = rng.patient_keys(seed, ModelStream.CLEARANCE, pid)
    cl = torch.stack([torch.exp(cl_sd * rng.normal(keys, d)) for d in range(len(DRUG_NAMES))], dim=1)
    return Latent(
        growth_rate_per_day=growth,
        baseline_sld_mm=sld0,
        sensitivity=sens,
        immune_responder=context[:, 0],
        immune_context_responder=context,
        radio_alpha_per_gy=alpha,
        anc_baseline_1e9_per_l=anc0,
        clearance_multiplier=cl,
    )


def immune_context_responder(seed: int, pop: popmod.Population, params: ModelParameters) -> torch.Tensor:
    """(rows, len(IMMUNE_CONTEXTS)) bool: whether the tumour responds to PD-(L)1 blockade in each context.

    One uniform draw u per patient (stream IMMUNE_RESPONDER); the patient responds in a context
    when u < p(PD-L1 group) x responder_scale x the context's factors (``with_chemotherapy``,
    ``after_progression`` of ``immunotherapy.responder_factor``), capped at 1. The shared u keeps
    the contexts nested (a larger probability responds in a superset of patients), so a patient's
    counterfactual outcomes under different lines and combinations stay consistent.
    """
    io = params.section("immunotherapy")
    dev = pop.patient_id.device
    p_group = torch.tensor([io["responder_probability"][g] for g in popmod.PDL1_GROUPS], dtype=torch.float64, device=dev)
    p = p_group[pop.pdl1_group] * io["responder_scale"]
    chemo, progressed = io["responder_factor"]["with_chemotherapy"], io["responder_factor"]["after_progression"]
    scale = torch.tensor([1.0, chemo, progressed, chemo * progressed], dtype=torch.float64, device=dev)
    u = rng.uniform(rng.patient_keys(seed, ModelStream.IMMUNE_RESPONDER, pop.patient_id), 0)
    return u.unsqueeze(1) < (p.unsqueeze(1) * scale).clamp(0.0, 1.0)


def sld_to_log_volume(sld_mm: torch.Tensor) -> torch.Tensor:
    """Log volume (cm3) of a sphere whose diameter is the sum of diameters (burden index)."""
    d_cm = sld_mm / 10.0
    return torch.log((math.pi / 6.0) * d_cm**3)


def log_volume_to_sld(log_volume: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`sld_to_log_volume`: the diameter sum in mm."""
    return 10.0 * torch.exp((log_volume - math.log(math.pi / 6.0)) / 3.0)


def latent_frame_columns(lat: Latent) -> dict[str, torch.Tensor]:
    """Named per-patient columns of ``lat`` (for verification and the ground-truth table)."""
    out = {
        "growth_rate_per_day": lat.growth_rate_per_day,
        "baseline_sld_mm": lat.baseline_sld_mm,
        "immune_responder": lat.immune_responder,
        **{name: lat.immune_context_responder[:, c] for name, c in IMMUNE_CONTEXT_COLUMNS.items()},
        "radio_alpha_per_gy": lat.radio_alpha_per_gy,
        "anc_baseline_1e9_per_l": lat.anc_baseline_1e9_per_l,
    }
    for k, c in enumerate(DRUG_CLASSES):
        if c != "radiotherapy":
            out[f"sensitivity_{c}"] = lat.sensitivity[:, k]
    return out
