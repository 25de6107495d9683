"""The precision-oncology NSCLC model as an inverse problem (``oncobench.inverse.problem``).

A patient is simulated under the release's historical first-line policy (``NsclcModel.factual``
with the release's confounding strength ``gamma``) and encoded as what a clinic observes on the
scan-visit grid (day 0 and every ``scan_every_days`` to the horizon):

====  ===============  ================================================================
 ch    name             value at visit ``j`` (0 with mask 0 where not observed)
====  ===============  ================================================================
 0     log_sld          log(1 + measured diameter sum in mm) of the visit's scan
 1     sld_seen         1 where the visit has a scan (never on day 0: the release tables
                        do not record the baseline scan)
 2     response         RECIST CR or PR at the scan
 3     progression      RECIST PD at the scan (new lesions included)
 4     log_anc          log neutrophil count (1e9/L), the visit's lab; its mask is ch 6
 5     line             line of therapy at the visit (1 = first)
 6     followed         alive and in follow-up at the visit
 7..   given_<class>    a drug of the class was given on a recorded day of [previous
                        visit, this visit) (the treatment channels)
====  ===============  ================================================================

Both entry points build the same per-patient grid of recorded days (:class:`Course`): from the
simulator's daily record (:meth:`NsclcProblem.simulate`) or from the release's trajectory table,
which keeps every ``record_every``-th day and every scan day (:meth:`NsclcProblem.encode`); x,
the summary and the treatment are computed from that grid alone, so the two agree exactly.

Parameters (theta) are the continuous latents on a log scale. A targeted class's sensitivity
is gated to 0 where the tumour lacks the class's target (``latent.draw_latent``), and the
simulator closes the immune classes where the tumour does not respond in the context of the
line (``latent.IMMUNE_CONTEXTS``); a point mass at log 0 would break a normalising flow's
density and the calibration ranks, so theta holds the *ungated* log sensitivity, the lognormal
draw the patient would have with the gate open (``sensitivity_log_sd x z`` of the patient's
SENSITIVITY stream). Where the gate is open it equals log(sensitivity); where it is closed it
influences nothing and its posterior should be its prior. The label is the immune gate of
first-line monotherapy (``latent_immune_responder``); with chemotherapy the gate opens for a
superset of patients (``immunotherapy.responder_factor.with_chemotherapy`` > 1).

Radiosensitivity is treated the same way. A tumour is of the radiosensitive kind with
probability ``radiotherapy.radiosensitive_share`` (``latent.radiosensitive_kind``), and alpha is
log-normal around its kind's median, so alpha's prior has two modes 2 log units apart; a
normalising flow does not reproduce such a prior (with share 0.451, SBC of log alpha failed,
KS p 1e-8, and so did the C2ST of prior against posterior). theta holds
``log_radio_alpha_within_kind``: log alpha where the tumour is of the common kind, and for the
radiosensitive kind the alpha the same draw gives around the common median (redrawn from the
patient's stream, as the ungated sensitivities are), which is one log-normal for every patient
and, bit for bit, the theta of the model without that kind. The kind is not a
label: no first line of the release gives radiotherapy, so neither alpha nor the kind is
identified (``IDENTIFIABLE``); alpha's posterior is this parameter's posterior, multiplied by
the ratio of the medians with the prior's probability of the kind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from oncobench import rng
from oncobench.config import Config
from oncobench.inverse.checks import Check
from oncobench.inverse.problem import DEFECTS, PERTURBED, Draw
from oncobench.nsclc import recist, tables
from oncobench.nsclc import verification as nv
from oncobench.nsclc.drugs import DRUG_CLASSES, DRUG_NAMES, DRUGS
from oncobench.nsclc.latent import IMMUNE, Latent, ModelStream, latent_frame_columns, radio_alpha, radiosensitive_kind
from oncobench.nsclc.model import FACTUAL_REPLICATE, NsclcModel
from oncobench.nsclc.params import with_values
from oncobench.nsclc.population import Population
from oncobench.nsclc.simulator import Assignment, Record, build_tables, reachable_regimens

# Patient ids of the inverse problem's simulations: key k draws ids from
# INVERSE_ID_OFFSET + k * KEY_STRIDE, disjoint from any release cohort (ids 0 .. N-1), from
# the identifiability training set (nv.TRAIN_ID_OFFSET) and the causal checks
# (nv.CHECK_ID_OFFSET), and from every other key as long as n <= KEY_STRIDE.
INVERSE_ID_OFFSET = 3 * 10**12
KEY_STRIDE = 10**9
MAX_KEY = 10**5
# Patients per simulated batch: the daily record of 1095 days holds ~33 bytes per patient-day.
CHUNK_PATIENTS = 4096
# Patients whose median growth rate the non_identifiable defect gives everybody (ids just
# below INVERSE_ID_OFFSET, used by no key).
MEDIAN_PATIENTS = 20_000
# What the scan-visit design identifies. Measured on the default config, 3000 simulated
# patients, held-out R² of a gradient-boosting regressor on flattened x (gamma 4 / gamma 0):
# the growth rate 0.53 / 0.62 (the slope of the measured diameter sum between scans), the
# baseline burden 0.81 / 0.80 (the first scan, 42 days in, seen through the growth) and the
# baseline neutrophil count 0.998 (the day-0 lab is the Friberg steady state). The others
# score R² <= 0: the radio-alpha acts only under radiotherapy, which neither the first lines
# nor the pathway after them give; a class sensitivity shows only in the patients given the
# class with its gate open (R² among them: anti_pd1 0.43, egfr_tki_3g 0.52, alk_tki_2g 0.35,
# the chemotherapy classes ~0, their kill being small beside the growth and the noise).
IDENTIFIABLE = ("log_growth_rate_per_day", "log_baseline_sld_mm")
BASE_PARAMETERS = ("log_growth_rate_per_day", "log_baseline_sld_mm", "log_radio_alpha_within_kind")
# Latents a clinic observes exactly, so they are data, not inference targets: the ANC baseline is
# the day-0 ANC lab. Its posterior is a point mass that no density estimator calibrates (with
# 12,000 simulations NPE gave it contraction 0.998 and a bias of 0.25 posterior SDs, failing SBC);
# causal_checks confirms instead that the lab reproduces it.
DIRECTLY_OBSERVED = ("anc_baseline_1e9_per_l",)
DIRECT_OBSERVATION_PATIENTS = 500
DIRECT_OBSERVATION_ATOL = 1e-5  # x is float32
CHANNELS = ("log_sld", "sld_seen", "response", "progression", "log_anc", "line", "followed")
# Smallest neutrophil count whose log is encoded (1e9/L); the Friberg state stays positive.
ANC_FLOOR = 1e-3
# Planted defects: the growth factor and the measurement-noise factor of the perturbed
# simulator.
PERTURBED_GROWTH = 1.5
PERTURBED_NOISE = 0.5
CR, PR, PD = int(recist.Response.CR), int(recist.Response.PR), int(recist.Response.PD)


@dataclass(frozen=True)
class Course:
    """The observed factual course on the grid of recorded days, one row per patient.

    Attributes:
        days: (K,) recorded days (every ``record_every``-th day, every scan day, day 0).
        followed: (n, K) alive and in follow-up on the day.
        line: (n, K) line of therapy (1 = first), 0 where not followed.
        drugs: (n, K) bit mask over ``drugs.DRUG_NAMES`` of the drugs given that day.
        scanned: (n, K) a scan took place.
        sld_mm: (n, K) measured diameter sum, 0 where not scanned.
        recist: (n, K) RECIST code (``recist.Response``), -1 where not scanned.
        anc: (n, K) neutrophil count (1e9/L), 1 where not followed.
        first_regimen: (n,) name of the first-line regimen.
    """

    days: np.ndarray
    followed: np.ndarray
    line: np.ndarray
    drugs: np.ndarray
    scanned: np.ndarray
    sld_mm: np.ndarray
    recist: np.ndarray
    anc: np.ndarray
    first_regimen: np.ndarray

    def __len__(self) -> int:
        return int(self.followed.shape[0])


def recorded_days(model: NsclcModel) -> np.ndarray:
    """Days the trajectory table keeps (``tables.trajectory_frame``): every ``record_every``-th
    day, every scan day and day 0, before the horizon."""
    keep = np.zeros(model.horizon_days, dtype=bool)
    keep[:: model.record_every] = True
    keep[[d for d in model.scan_days if d < model.horizon_days]] = True
    keep[0] = True
    return np.nonzero(keep)[0]


def course_from_record(rec: Record, first_regimen: np.ndarray, days: np.ndarray) -> Course:
    """The course of the simulator's daily ``rec`` (days, rows) on the recorded ``days``."""
    sel = torch.as_tensor(days, device=rec.alive.device)

    def grid(x: torch.Tensor) -> np.ndarray:
        return x[sel].T.cpu().numpy()

    followed = grid(rec.alive)
    code = np.where(followed, grid(rec.recist).astype(np.int64), -1)
    scanned = code >= 0
    return Course(
        days=np.asarray(days, dtype=np.int64),
        followed=followed,
        line=np.where(followed, grid(rec.line).astype(np.int64) + 1, 0),
        drugs=np.where(followed, grid(rec.drugs_given).astype(np.int64), 0),
        scanned=scanned,
        sld_mm=np.where(scanned, grid(rec.sld_measured_mm), 0.0),
        recist=code,
        anc=np.where(followed, grid(rec.anc_1e9_per_l), 1.0),
        first_regimen=np.asarray(first_regimen, dtype=object),
    )


def course_from_frame(trajectories: pd.DataFrame, patient_id: np.ndarray, days: np.ndarray) -> Course:
    """The course of a trajectory table (schema NsclcTrajectory), rows in ``patient_id`` order.

    Reads day, line, regimen, drugs_given, scanned, sld_measured_mm, recist and anc_1e9_per_l
    (never sld_true_mm).
    """
    index = pd.Index(patient_id)
    if not index.is_unique:
        raise ValueError("cohort: patient_id is not unique")
    row = index.get_indexer(trajectories["patient_id"].to_numpy())
    if (row < 0).any():
        extra = trajectories["patient_id"].to_numpy()[row < 0][0]
        raise ValueError(f"trajectories: patient_id {extra} is not in the cohort")
    day = trajectories["day"].to_numpy().astype(np.int64)
    col = np.searchsorted(days, day).clip(max=len(days) - 1)
    off = days[col] != day
    if off.any():
        raise ValueError(
            f"trajectories: day {day[off][0]} of patient_id {trajectories['patient_id'].to_numpy()[off][0]} "
            "is not a recorded day of this model (record_every, scan_every_days, horizon_days)"
        )
    n, k = len(patient_id), len(days)
    followed = np.zeros((n, k), dtype=bool)
    followed[row, col] = True
    if not followed[:, 0].all():
        missing = patient_id[~followed[:, 0]][0]
        raise ValueError(f"trajectories: no day-0 row for patient_id {missing} of the cohort")

    def put(values: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full((n, k), fill, dtype=dtype)
        out[row, col] = values
        return out

    code_of = {name: i for i, name in enumerate(tables.RESPONSES)}
    code = trajectories["recist"].astype(object).map(code_of).fillna(-1).to_numpy().astype(np.int64)
    scanned = trajectories["scanned"].to_numpy(dtype=bool) & (code >= 0)
    sld = trajectories["sld_measured_mm"].to_numpy(dtype=np.float64, na_value=np.nan)
    first = np.empty(n, dtype=object)
    at0 = day == 0
    first[row[at0]] = trajectories["regimen"].astype(str).to_numpy()[at0]
    return Course(
        days=np.asarray(days, dtype=np.int64),
        followed=followed,
        line=put(trajectories["line"].to_numpy().astype(np.int64), 0, np.int64),
        drugs=put(trajectories["drugs_given"].to_numpy().astype(np.int64), 0, np.int64),
        scanned=put(scanned, False, bool),
        sld_mm=put(np.where(scanned, sld, 0.0), 0.0, np.float64),
        recist=put(np.where(scanned, code, -1), -1, np.int64),
        anc=put(trajectories["anc_1e9_per_l"].to_numpy(dtype=np.float64), 1.0, np.float64),
        first_regimen=first,
    )


def concat_courses(courses: list[Course]) -> Course:
    """The patients of ``courses`` (on one grid of recorded days), in order."""
    rows = {f.name: np.concatenate([getattr(c, f.name) for c in courses]) for f in dataclasses.fields(Course) if f.name != "days"}
    return Course(days=courses[0].days, **rows)


def class_bits(classes: tuple[str, ...]) -> np.ndarray:
    """(classes,) bit mask over ``DRUG_NAMES`` of the drugs of each class."""
    return np.array(
        [sum(1 << d for d, name in enumerate(DRUG_NAMES) if DRUGS[name].drug_class == c) for c in classes], dtype=np.int64
    )


def encode_course(course: Course, visit_days: tuple[int, ...], classes: tuple[str, ...]) -> np.ndarray:
    """(n, C, T) float32 observation of ``course`` on ``visit_days`` (channels: module docstring)."""
    pos = np.searchsorted(course.days, visit_days)
    if not np.array_equal(course.days[pos.clip(max=len(course.days) - 1)], visit_days):
        raise ValueError("visit days must be recorded days")
    fol = course.followed[:, pos]
    seen = course.scanned[:, pos]
    code = course.recist[:, pos]
    x = np.zeros((len(course), len(CHANNELS) + len(classes), len(visit_days)), dtype=np.float32)
    x[:, 0] = np.where(seen, np.log1p(course.sld_mm[:, pos]), 0.0)
    x[:, 1] = seen
    x[:, 2] = seen & ((code == CR) | (code == PR))
    x[:, 3] = seen & (code == PD)
    x[:, 4] = np.where(fol, np.log(np.maximum(course.anc[:, pos], ANC_FLOOR)), 0.0)
    x[:, 5] = course.line[:, pos]
    x[:, 6] = fol
    # given on a recorded day of [previous visit, this visit): counts from a cumulative sum
    for i, bits in enumerate(class_bits(classes)):
        given = course.followed & ((course.drugs & bits) != 0)
        cum = np.concatenate([np.zeros((len(course), 1), dtype=np.int64), np.cumsum(given, axis=1)], axis=1)
        x[:, len(CHANNELS) + i, 1:] = (cum[:, pos[1:]] - cum[:, pos[:-1]]) > 0
    return x


def summary_frame(course: Course, visit_days: tuple[int, ...]) -> pd.DataFrame:
    """Per-patient features of the observed course, for the realism test; numeric, never NaN.

    Columns: first_scan_sld_mm (the first scan stands in for the baseline, which the release
    tables do not record) and first_scan_seen; nadir_change, the smallest first-line
    measurement relative to the first scan; best_response, the best unconfirmed RECIST code
    of the first line (CR 1 .. PD 4, 0 = no scan); days_to_progression (first-line PD scan
    day, else the last first-line day followed) and progression_event; lines (lines of therapy
    reached); worst_log_anc over the recorded days; last_followed_day and died; scans (scans
    taken); sld_roughness, the median absolute second difference of log(1 + measured SLD) over
    three consecutive scanned visits (measurement noise dominates it; the median ignores the
    bends of a response or a progression), and roughness_seen.
    """
    n = len(course)
    days = course.days.astype(np.float64)
    line1 = course.followed & (course.line == 1)
    scan1 = course.scanned & line1
    has_scan = course.scanned.any(1)
    first_pos = np.argmax(course.scanned, axis=1)
    first = np.where(has_scan, course.sld_mm[np.arange(n), first_pos], 0.0)
    nadir = np.where(scan1, course.sld_mm, np.inf).min(1)
    ok = has_scan & (first > 0) & np.isfinite(nadir)
    nadir_change = np.where(ok, (nadir - first) / np.where(ok, first, 1.0), 0.0)
    codes = np.where(scan1 & (course.recist > 0), course.recist, 99).min(1)
    best = np.where(codes < 99, codes, 0)
    pd1 = scan1 & (course.recist == PD)
    event = pd1.any(1)
    pd_day = days[np.argmax(pd1, axis=1)]
    last_l1 = np.where(line1, days, 0.0).max(1)
    last = np.where(course.followed, days, 0.0).max(1)
    log_anc = np.where(course.followed, np.log(np.maximum(course.anc, ANC_FLOOR)), np.inf).min(1)

    pos = np.searchsorted(course.days, visit_days)
    seen = course.scanned[:, pos]
    logs = np.log1p(course.sld_mm[:, pos])
    triple = seen[:, :-2] & seen[:, 1:-1] & seen[:, 2:]
    second = np.abs(logs[:, 2:] - 2.0 * logs[:, 1:-1] + logs[:, :-2])
    m = triple.sum(1)
    rough = np.zeros(n)
    if second.shape[1]:
        values = np.where(triple, second, np.nan)
        values[m == 0, 0] = 0.0  # no three consecutive scans: 0, flagged by roughness_seen
        rough = np.nanmedian(values, axis=1)
    return pd.DataFrame(
        {
            "first_scan_sld_mm": first,
            "first_scan_seen": has_scan.astype(np.float64),
            "nadir_change": nadir_change,
            "best_response": best.astype(np.float64),
            "days_to_progression": np.where(event, pd_day, last_l1),
            "progression_event": event.astype(np.float64),
            "lines": course.line.max(1).astype(np.float64),
            "worst_log_anc": log_anc,
            "last_followed_day": last,
            "died": (~course.followed[:, -1]).astype(np.float64),
            "scans": course.scanned.sum(1).astype(np.float64),
            "sld_roughness": rough,
            "roughness_seen": (m > 0).astype(np.float64),
        }
    )


def ungated_log_sensitivity(seed: int, patient_id: torch.Tensor, model: NsclcModel, classes: tuple[str, ...]) -> torch.Tensor:
    """(n, classes) float64 ``sensitivity_log_sd x z``: the patient's log sensitivity to each class
    with its gate open, from the SENSITIVITY stream ``latent.draw_latent`` draws it from."""
    keys = rng.patient_keys(seed, ModelStream.SENSITIVITY, patient_id)
    cols = [model.params.drug_class(c)["sensitivity_log_sd"] * rng.normal(keys, DRUG_CLASSES.index(c)) for c in classes]
    return torch.stack(cols, dim=1)


def common_kind_alpha(seed: int, patient_id: torch.Tensor, model: NsclcModel) -> torch.Tensor:
    """(n,) float64 the patient's alpha had the tumour the common kind: the latent alpha where it
    has (``latent.radiosensitive_kind``), else the same RADIO_ALPHA draw around the common median.
    The same number, bit for bit, as the latent alpha with no radiosensitive share."""
    common = torch.zeros(patient_id.shape, dtype=torch.bool, device=patient_id.device)
    return radio_alpha(seed, patient_id, model.params, common)


def theta_of(
    latents: dict[str, np.ndarray], ungated: np.ndarray, common_alpha: np.ndarray, classes: tuple[str, ...]
) -> np.ndarray:
    """(n, D) float32 parameters from the named latent columns (``latent.latent_frame_columns``):
    log growth rate and log baseline burden; log alpha within its kind, i.e. log ``common_alpha``
    (:func:`common_kind_alpha`) where the tumour is of the radiosensitive kind; then the log
    sensitivity per class (ungated where the gate is closed; module docstring)."""
    cols = [np.log(np.asarray(latents[name[len("log_"):]], dtype=np.float64)) for name in BASE_PARAMETERS[:2]]
    alpha = np.asarray(latents["radio_alpha_per_gy"], dtype=np.float64)
    cols.append(np.log(np.where(latents["radiosensitive"], common_alpha, alpha)))
    for i, c in enumerate(classes):
        s = np.asarray(latents[f"sensitivity_{c}"], dtype=np.float64)
        cols.append(np.where(s > 0, np.log(np.where(s > 0, s, 1.0)), ungated[:, i]))
    return np.stack(cols, axis=1).astype(np.float32)


def planted_model(model: NsclcModel, defect: str | None) -> NsclcModel:
    """``model`` with the parameter side of ``defect`` planted (``inverse.problem.DEFECTS``,
    ``PERTURBED``): every class's potency negated (wrong_sign), measurement error removed
    (no_noise) or halved (perturbed)."""
    meas = model.params.section("measurement")
    if defect == "wrong_sign":
        values = {f"drug_classes.{c}.potency_per_day": -model.params.drug_class(c)["potency_per_day"] for c in DRUG_CLASSES}
    elif defect == "no_noise":
        values = {"measurement.cv": 0.0, "measurement.sd_mm": 0.0}
    elif defect == PERTURBED:
        values = {"measurement.cv": PERTURBED_NOISE * meas["cv"], "measurement.sd_mm": PERTURBED_NOISE * meas["sd_mm"]}
    else:
        return model
    return dataclasses.replace(model, params=with_values(model.params, values))


def planted_latent(lat: Latent, defect: str | None, median_growth: float) -> Latent:
    """``lat`` as the simulator sees it under ``defect``: every patient grows at the population
    median (non_identifiable) or 1.5x faster (perturbed)."""
    if defect == "non_identifiable":
        return dataclasses.replace(lat, growth_rate_per_day=torch.full_like(lat.growth_rate_per_day, median_growth))
    if defect == PERTURBED:
        return dataclasses.replace(lat, growth_rate_per_day=PERTURBED_GROWTH * lat.growth_rate_per_day)
    return lat


def _known(defect: str | None) -> None:
    if defect is not None and defect not in (*DEFECTS, PERTURBED):
        raise ValueError(f"defect {defect!r}; expected None or one of {(*DEFECTS, PERTURBED)}")


def _classes_of(model: NsclcModel, regimens: list[int]) -> tuple[str, ...]:
    """Drug classes (``DRUG_CLASSES`` order) given by any of the library's ``regimens``."""
    dose = model.library.dose[regimens].flatten(0, 2).gt(0).any(0).tolist()
    given = {DRUGS[d].drug_class for d, used in zip(model.library.drugs, dose) if used}
    return tuple(c for c in DRUG_CLASSES if c in given)


class NsclcProblem:
    """The NSCLC model under the historical first-line policy of strength ``gamma``, as an
    ``InverseProblem`` (module docstring for the encoding).

    Args:
        cfg: the release's config (``NsclcModel.from_config``).
        gamma: confounding strength of the historical policy whose factual course is observed.
        device: where patients are simulated (draws come back on the CPU).
    """

    model = "nsclc"
    label_name = "immune_responder"
    label_classes = ("no", "yes")

    def __init__(self, cfg: Config, gamma: float, device: torch.device) -> None:
        self.nsclc = NsclcModel.from_config(cfg)
        self.gamma = float(gamma)
        self.device = torch.device(device)
        lib = self.nsclc.library
        first = lib.indices(self.nsclc.first_line).tolist()
        # sensitivities of the classes a first line gives; treatment channels for every class
        # the first line and the pathway after it can give
        self.sensitivity_classes = tuple(c for c in _classes_of(self.nsclc, first) if c != "radiotherapy")
        table = build_tables(self.nsclc.params, lib, "cpu")
        start = torch.tensor(first, dtype=torch.int64)
        self.given_classes = _classes_of(self.nsclc, reachable_regimens(table, Assignment(start, torch.full_like(start, -1))))
        self.parameters = (*BASE_PARAMETERS, *(f"log_sensitivity_{c}" for c in self.sensitivity_classes))
        self.identifiable = IDENTIFIABLE
        # The responder status shows in the response of the patients given immunotherapy: a
        # gradient-boosting classifier on x reached AUROC 0.86 (gamma 4) and 0.76 (gamma 0) on
        # the default config, prevalence 0.35. Without immunotherapy in the first line only
        # later lines could show it.
        self.label_identifiable = any(c in IMMUNE for c in self.sensitivity_classes)
        self.treatment_classes = tuple(self.nsclc.first_line)
        self.channels = (*CHANNELS, *(f"given_{c}" for c in self.given_classes))
        self.treatment_channels = tuple(range(len(CHANNELS), len(self.channels)))
        self.visit_days = (0, *self.nsclc.scan_days)
        self.days = recorded_days(self.nsclc)
        ids = INVERSE_ID_OFFSET - MEDIAN_PATIENTS + torch.arange(MEDIAN_PATIENTS, dtype=torch.int64)
        self.median_growth = float(self.nsclc.draw(ids)[1].growth_rate_per_day.median())

    # ---- simulation ----------------------------------------------------------------------------
    def patient_ids(self, n: int, key: int) -> torch.Tensor:
        """Ids of ``simulate(n, key=key)``'s patients."""
        if not 0 <= key < MAX_KEY or not 0 < n <= KEY_STRIDE:
            raise ValueError(f"simulate: n={n}, key={key}; expected 0 < n <= {KEY_STRIDE} and 0 <= key < {MAX_KEY}")
        return INVERSE_ID_OFFSET + key * KEY_STRIDE + torch.arange(n, dtype=torch.int64, device=self.device)

    def simulate(self, n: int, *, key: int, defect: str | None = None) -> Draw:
        """``n`` fresh patients (ids :meth:`patient_ids`) on their factual first line, with
        ``defect`` planted in the simulator (theta and the label keep the drawn values)."""
        _known(defect)
        return self.simulate_patients(*self.nsclc.draw(self.patient_ids(n, key)), defect=defect)

    def simulate_patients(self, pop: Population, lat: Latent, *, defect: str | None = None) -> Draw:
        """Patients ``pop`` with latents ``lat`` on their factual first line, encoded; the
        simulator runs with ``defect`` planted, theta and the label are those of ``lat``."""
        model = planted_model(self.nsclc, defect)
        run = planted_latent(lat, defect, self.median_growth)
        choice = model.factual_choice(pop, run, self.gamma)
        regimen = self.nsclc.library.indices(self.nsclc.first_line).to(choice.device)[choice]
        courses = []
        for lo in range(0, len(pop), CHUNK_PATIENTS):
            rows = torch.arange(lo, min(lo + CHUNK_PATIENTS, len(pop)), device=choice.device)
            out = model.run(pop.take(rows), run.take(rows), regimen[rows], record=True, replicate=FACTUAL_REPLICATE)
            names = np.asarray(self.treatment_classes, dtype=object)[choice[rows].cpu().numpy()]
            courses.append(course_from_record(out.record, names, self.days))
        course = concat_courses(courses)
        columns = {k: v.cpu().numpy() for k, v in latent_frame_columns(lat).items()}
        ungated = ungated_log_sensitivity(self.nsclc.seed, pop.patient_id, self.nsclc, self.sensitivity_classes)
        columns["radiosensitive"] = radiosensitive_kind(self.nsclc.seed, pop.patient_id, self.nsclc.params).cpu().numpy()
        common = common_kind_alpha(self.nsclc.seed, pop.patient_id, self.nsclc)
        return self._encoded(course, columns, ungated.cpu().numpy(), common.cpu().numpy())

    def _encoded(
        self, course: Course, latents: dict[str, np.ndarray] | None, ungated: np.ndarray | None, common_alpha: np.ndarray | None
    ) -> Draw:
        x = encode_course(course, self.visit_days, self.given_classes)
        # code of each patient's first-line regimen; -1 where it is not a first-line class
        treatment = pd.Categorical(course.first_regimen, categories=self.treatment_classes).codes.astype(np.int64)
        if latents is None:
            theta = np.full((len(course), len(self.parameters)), np.nan, dtype=np.float32)
            label = None
        else:
            theta = theta_of(latents, ungated, common_alpha, self.sensitivity_classes)
            label = torch.as_tensor(np.asarray(latents["immune_responder"], dtype=bool).astype(np.int64))
        return Draw(
            theta=torch.as_tensor(theta),
            x=torch.as_tensor(x),
            label=label,
            treatment=torch.as_tensor(treatment),
            summary=summary_frame(course, self.visit_days),
        )

    # ---- release tables ------------------------------------------------------------------------
    def encode(self, cohort: pd.DataFrame, trajectories: pd.DataFrame) -> Draw:
        """The release patients from their cohort and factual trajectory tables; theta and the
        label from the cohort's ``latent_*`` columns where it has them (NaN and None otherwise).
        Closed-gate sensitivities are redrawn from the patient id (module docstring)."""
        pid = cohort["patient_id"].to_numpy().astype(np.int64)
        course = course_from_frame(trajectories, pid, self.days)
        p = tables.LATENT_PREFIX
        if not all(c in cohort.columns for c in tables.latent_columns()):
            return self._encoded(course, None, None, None)
        latents = {c[len(p):]: cohort[c].to_numpy() for c in tables.latent_columns()}
        ungated = ungated_log_sensitivity(self.nsclc.seed, torch.as_tensor(pid), self.nsclc, self.sensitivity_classes)
        latents["radiosensitive"] = radiosensitive_kind(self.nsclc.seed, torch.as_tensor(pid), self.nsclc.params).numpy()
        common = common_kind_alpha(self.nsclc.seed, torch.as_tensor(pid), self.nsclc)
        return self._encoded(course, latents, ungated.numpy(), common.numpy())

    # ---- causal checks -------------------------------------------------------------------------
    def causal_checks(self, *, defect: str | None = None) -> list[Check]:
        """``nsclc.verification.causal_checks`` on ``CHECK_PATIENTS`` fresh patients, with
        ``defect`` planted in the model and the latents it runs on."""
        _known(defect)
        ids = nv.CHECK_ID_OFFSET + torch.arange(nv.CHECK_PATIENTS, dtype=torch.int64, device=self.device)
        pop, lat = self.nsclc.draw(ids)
        checks = nv.causal_checks(planted_model(self.nsclc, defect), pop, planted_latent(lat, defect, self.median_growth))
        return checks + self._direct_observation_checks(pop, lat, defect)

    def _direct_observation_checks(self, pop: Population, lat: Latent, defect: str | None) -> list[Check]:
        """The day-0 ANC lab of ``DIRECT_OBSERVATION_PATIENTS`` patients equals their latent ANC
        baseline (log scale), so the baseline is observed, not inferred (``DIRECTLY_OBSERVED``)."""
        rows = torch.arange(min(DIRECT_OBSERVATION_PATIENTS, len(pop)), device=pop.patient_id.device)
        drawn = self.simulate_patients(pop.take(rows), lat.take(rows), defect=defect)
        truth = torch.log(lat.anc_baseline_1e9_per_l[rows]).cpu().double()
        err = float((drawn.x[:, CHANNELS.index("log_anc"), 0].double() - truth).abs().max())
        return [Check("direct_observation", "anc_baseline_1e9_per_l = day-0 ANC lab", "max_abs_log_error", err, DIRECT_OBSERVATION_ATOL, "<=")]


__all__ = [
    "CHANNELS", "Course", "IDENTIFIABLE", "NsclcProblem", "concat_courses", "course_from_frame", "course_from_record",
    "encode_course", "planted_latent", "planted_model", "common_kind_alpha", "recorded_days", "summary_frame", "theta_of",
    "ungated_log_sensitivity",
]
