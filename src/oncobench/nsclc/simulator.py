"""Batched daily simulation of NSCLC patients through lines of therapy.

One row = one patient under one assignment (arm, regimen, replicate); Python loops run over days
only. Each day, in order: the regimen's dose event table gives today's doses (held while ANC is
below the regimen's threshold at a cycle start, reduced after febrile neutropenia); one-compartment
PK turns doses into normalised exposure (``pkpd``); drug classes kill tumour (Claret form with
acquired resistance), radiotherapy by the linear-quadratic model; Friberg myelosuppression moves
the neutrophil count (``toxicity``); adverse events, new lesions and death arrive by
cumulative-hazard clocks; scans on the schedule measure the diameter sum with error and RECIST 1.1
(``recist``) classifies it against the line's baseline and nadir. Progression ends a line and the
pathway (or a trial's crossover rule) starts the next.

Random numbers come from counter-based streams keyed by patient (``latent.ModelStream``): event
clocks draw their exponential thresholds per patient, not per day, so the same patient under two
regimens meets the same thresholds (common random numbers) and differs only where the treatment
changes its hazards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from oncobench import rng
from oncobench.nsclc import economics, pkpd, recist, toxicity
from oncobench.nsclc import population as popmod
from oncobench.nsclc.drugs import (
    CYTOTOXIC_CLASSES,
    DRUG_CLASSES,
    DRUG_NAMES,
    DRUGS,
    REFERENCE_CRCL_ML_MIN,
    class_of_drug,
    standard_mean_concentration_mg_per_l,
)
from oncobench.nsclc.latent import IMMUNE, Latent, ModelStream, log_volume_to_sld, sld_to_log_volume
from oncobench.nsclc.params import ModelParameters
from oncobench.nsclc.regimens import RegimenLibrary

BSC = "best_supportive_care"
DAYS_PER_MONTH = 30.4375
IV_CLASSES = ("platinum", "antifolate", "taxane", "nucleoside", "anti_pd1", "anti_pdl1")
CONFIRMATION_DAYS = 28  # RECIST 1.1 confirmation >= 4 weeks (brief §4)
MIN_SD_DAYS = 35  # assumption: SD counts as best response only if seen >= 5 weeks in
RT = DRUG_NAMES.index("thoracic_rt")
CARBOPLATIN = DRUG_NAMES.index("carboplatin")
# Friberg's linear effect may exceed 1 on a dosing day (a docetaxel dose gives ~1.5 averaged
# over day 1); capping it at 1 would make the nadir far too shallow (tests/nsclc/test_pharmacology.py).
MAX_DRUG_EFFECT = 4.0
# RK4 substeps per day of the Friberg model. At 2 substeps RK4's damping factor stops decreasing
# for large drug effects and a higher dose could leave a shallower nadir (found by the verify
# stage's dose-response check). Rows with a drug effect above STRONG_EFFECT get
# FRIBERG_SUBSTEPS_STRONG substeps, the others FRIBERG_SUBSTEPS: the daily ANC then stays within
# 0.5% of a 32-substep solution for any effect up to MAX_DRUG_EFFECT (tests/nsclc/test_simulator.py).
FRIBERG_SUBSTEPS = 3
FRIBERG_SUBSTEPS_STRONG = 16
STRONG_EFFECT = 1.5
RT_CLASS = DRUG_CLASSES.index("radiotherapy")

# best-response codes of the study line (recist.Response values)
NE, CR, PR, SD, PD = (int(recist.Response.NE), int(recist.Response.CR), int(recist.Response.PR),
                      int(recist.Response.SD), int(recist.Response.PD))


@dataclass(frozen=True)
class Assignment:
    """What each row receives.

    Attributes:
        regimen: (rows,) index into the library of the study (first simulated) regimen.
        crossover_regimen: (rows,) regimen started at progression on the study line instead of
            the pathway's next regimen; -1 = follow the pathway.
        start_line: line number of the study regimen (1 = first line); sets the next-line
            attrition the pathway applies.
    """

    regimen: torch.Tensor
    crossover_regimen: torch.Tensor
    start_line: int = 1


@dataclass(frozen=True)
class Start:
    """State of rows that enter the simulation after a prior line (second line, consolidation).

    Attributes:
        log_volume: (rows,) tumour burden on day 0, log cm3 (burden index of ``latent``).
        class_exposure_days: (rows, classes) days already spent on each drug class; acquired
            resistance carries over.
        line: line number of the study regimen.
        progressed: the rows enter at progression on the prior line (second-line trials), so the
            death hazard carries ``survival.post_progression_hazard_ratio`` from day 0; False for
            rows entering without progression (consolidation after chemoradiation).
        doomed_volume: (rows,) cm3 of tumour killed by radiotherapy and not yet cleared (seen on
            scans, not growing); None = none.
        clonogen_depth: (rows,) log units by which radiotherapy has taken the living tumour below
            the volume floor (<= 0; -inf = eradicated); None = none.
    """

    log_volume: torch.Tensor
    class_exposure_days: torch.Tensor
    line: int = 2
    progressed: bool = False
    doomed_volume: torch.Tensor | None = None
    clonogen_depth: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> "Start":
        doomed = None if self.doomed_volume is None else self.doomed_volume[index]
        depth = None if self.clonogen_depth is None else self.clonogen_depth[index]
        return Start(self.log_volume[index], self.class_exposure_days[index], self.line, self.progressed, doomed, depth)


@dataclass(frozen=True)
class Schedule:
    """Horizon and scans: ``scan_days`` lists days (from day 0, the baseline scan) with a scan."""

    days: int
    scan_days: tuple[int, ...]
    record: bool = False
    row_scan_days: tuple[tuple[int, ...], ...] | None = None
    row_schedule: torch.Tensor | None = None

    """``row_scan_days`` and ``row_schedule`` (optional) give rows their own scan schedules:
    row r is scanned on the days ``row_scan_days[row_schedule[r]]`` (used to simulate several
    trials in one batch); ``scan_days`` is then ignored."""


@dataclass(frozen=True)
class Outcome:
    """Per-row results; times in days from day 0. ``*_event`` False = censored at the horizon."""

    pfs_days: torch.Tensor
    pfs_event: torch.Tensor
    os_days: torch.Tensor
    os_event: torch.Tensor
    best_response: torch.Tensor  # recist.Response codes, study line, confirmed
    grade3_ae_study: torch.Tensor  # any grade >= 3 adverse event during the study line
    grade3_ae_day: torch.Tensor  # day of the study line's first grade >= 3 event (-1 if none)
    worst_grade: torch.Tensor  # worst CTCAE grade over the course (5 = treatment-related death)
    days_grade3plus: torch.Tensor
    qalys: torch.Tensor  # discounted
    cost_gbp: torch.Tensor  # discounted
    lines_received: torch.Tensor
    study_treatment_days: torch.Tensor
    treatment_death: torch.Tensor
    febrile_neutropenia: torch.Tensor
    progression_log_volume: torch.Tensor  # living burden at the study line's progression (NaN if none)
    progression_class_exposure: torch.Tensor  # (rows, classes) days on each class by then
    progression_doomed_volume: torch.Tensor  # cm3 killed by radiotherapy, not yet cleared, then (NaN if none)
    final_log_volume: torch.Tensor  # living burden at the end
    final_class_exposure: torch.Tensor
    final_doomed_volume: torch.Tensor  # cm3 killed by radiotherapy, not yet cleared, at the end
    final_clonogen_depth: torch.Tensor  # log units below the volume floor at the end (-inf = eradicated)
    record: "Record | None" = None

    def take(self, index: torch.Tensor) -> "Outcome":
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "record"}
        return Outcome(**{k: v[index] for k, v in values.items()}, record=None)


@dataclass(frozen=True)
class Record:
    """Day-major daily history (days, rows), kept when ``Schedule.record``."""

    sld_true_mm: torch.Tensor
    sld_measured_mm: torch.Tensor  # NaN on days without a scan
    recist: torch.Tensor  # int8, -1 on days without a scan
    anc_1e9_per_l: torch.Tensor
    regimen: torch.Tensor  # int16, index of the line's regimen (-1 after death)
    line: torch.Tensor  # int8
    drugs_given: torch.Tensor  # int32 bit mask over the drug axis
    alive: torch.Tensor


@dataclass(frozen=True)
class Tables:
    """Constant tensors the daily loop reads, built once per (parameters, library, device)."""

    dose: torch.Tensor
    cycle_days: torch.Tensor
    cycles: torch.Tensor
    n_phases: torch.Tensor
    drug_max_cycles: torch.Tensor
    hold_anc: torch.Tensor
    max_delay: torch.Tensor
    fn_factor: torch.Tensor
    max_treatment_days: torch.Tensor
    k_per_day: torch.Tensor  # (D,)
    inv_ref_amount: torch.Tensor  # (D,) 1 / standard mean amount (mg)
    class_matrix: torch.Tensor  # (D, K) one-hot
    potency: torch.Tensor  # (K,)
    resistance: torch.Tensor  # (K,)
    nonheme: torch.Tensor  # (K,)
    myelo: torch.Tensor  # (D,)
    price: torch.Tensor  # (D,)
    iv_drug: torch.Tensor  # (D,) bool
    next_regimen: torch.Tensor  # (R,) -1 = best supportive care
    bit: torch.Tensor  # (D,) int32 powers of two
    bsc: int
    first_gen_egfr: torch.Tensor  # (R,) bool
    with_chemotherapy: torch.Tensor  # (R,) bool: the regimen gives a cytotoxic drug
    with_immunotherapy: torch.Tensor  # (R,) bool: the regimen gives a PD-(L)1 inhibitor
    osimertinib: int
    t790m_fallback: int


def build_tables(params: ModelParameters, library: RegimenLibrary, device: torch.device | str) -> Tables:
    """Tensors of the library and parameters on ``device``."""
    if tuple(library.drugs) != DRUG_NAMES:
        raise ValueError("regimen library drug axis differs from oncobench.nsclc.drugs.DRUG_NAMES")
    f64 = torch.float64
    dev = torch.device(device)
    lib = library.to(dev)
    k = torch.tensor([math.log(2.0) * 24.0 / DRUGS[d].half_life_h for d in DRUG_NAMES], dtype=f64, device=dev)
    ref = torch.tensor(
        [standard_mean_concentration_mg_per_l(DRUGS[d]) * DRUGS[d].volume_l for d in DRUG_NAMES], dtype=f64, device=dev
    )
    inv_ref = torch.where(torch.arange(len(DRUG_NAMES), device=dev) == RT, torch.zeros_like(ref), 1.0 / ref)
    cls = class_of_drug().to(dev)
    class_matrix = torch.nn.functional.one_hot(cls, len(DRUG_CLASSES)).to(f64)
    block = params.section("drug_classes")
    potency = torch.tensor([block[c]["potency_per_day"] for c in DRUG_CLASSES], dtype=f64, device=dev)
    resistance = torch.tensor([block[c]["resistance_per_day"] for c in DRUG_CLASSES], dtype=f64, device=dev)
    nonheme = torch.tensor([block[c]["nonheme_grade3_per_day"] for c in DRUG_CLASSES], dtype=f64, device=dev)
    scale = params.get("toxicity.myelo_potency_scale")
    myelo = torch.tensor([DRUGS[d].myelo_potency * scale for d in DRUG_NAMES], dtype=f64, device=dev)
    prices = params.get("economics.price_gbp_per_mg")
    price = torch.tensor([prices[d] for d in DRUG_NAMES], dtype=f64, device=dev)
    iv = torch.tensor([DRUGS[d].drug_class in IV_CLASSES for d in DRUG_NAMES], device=dev)
    pathway = params.get("pathway.next_regimen")
    names = list(library.names)
    nxt = []
    for r in names:
        target = pathway.get(r, BSC)
        if target not in names:
            raise ValueError(f"{params.source}: pathway.next_regimen.{r} names unknown regimen '{target}'")
        nxt.append(-1 if target == BSC else names.index(target))
    first_gen = torch.tensor([r in ("gefitinib", "erlotinib") for r in names], device=dev)
    given = lib.dose.gt(0).flatten(1, 2).any(1)  # (R, D); dose is (R, P, C, D)
    with_chemo = (given & torch.tensor([DRUGS[d].cytotoxic for d in DRUG_NAMES], device=dev)).any(1)
    with_io = (given & torch.tensor([DRUGS[d].drug_class in IMMUNE for d in DRUG_NAMES], device=dev)).any(1)
    return Tables(
        dose=lib.dose,
        cycle_days=lib.cycle_days,
        cycles=lib.cycles,
        n_phases=lib.n_phases,
        drug_max_cycles=lib.drug_max_cycles,
        hold_anc=lib.hold_anc_below_1e9_per_l,
        max_delay=lib.max_delay_days,
        fn_factor=lib.fn_dose_factor,
        max_treatment_days=lib.max_treatment_days,
        k_per_day=k,
        inv_ref_amount=inv_ref,
        class_matrix=class_matrix,
        potency=potency,
        resistance=resistance,
        nonheme=nonheme,
        myelo=myelo,
        price=price,
        iv_drug=iv,
        next_regimen=torch.tensor(nxt, dtype=torch.int64, device=dev),
        bit=(2 ** torch.arange(len(DRUG_NAMES), device=dev)).to(torch.int32),
        bsc=names.index(BSC),
        first_gen_egfr=first_gen,
        with_chemotherapy=with_chemo,
        with_immunotherapy=with_io,
        osimertinib=names.index("osimertinib"),
        t790m_fallback=names.index("carboplatin_pemetrexed"),
    )


def reachable_regimens(T: Tables, assignment: Assignment) -> list[int]:
    """Regimens a row can receive: its study regimen, crossover, and the pathway from them."""
    todo = set(assignment.regimen.unique().tolist()) | set(int(x) for x in assignment.crossover_regimen.unique().tolist() if x >= 0)
    todo |= {T.bsc, T.t790m_fallback} if bool(T.first_gen_egfr[list(todo)].any()) else {T.bsc}
    seen: set[int] = set()
    nxt = T.next_regimen.tolist()
    while todo:
        r = todo.pop()
        if r in seen:
            continue
        seen.add(r)
        if nxt[r] >= 0:
            todo.add(nxt[r])
        if bool(T.first_gen_egfr[r]):
            todo.add(T.t790m_fallback)
    return sorted(seen)


def unit_multiplier(pop: popmod.Population, library: RegimenLibrary) -> torch.Tensor:
    """(rows, D) mg per unit of each drug's regimen amount for each patient (Calvert, BSA, kg)."""
    cols = []
    one = torch.ones_like(pop.bsa_m2)
    for unit in library.units:
        cols.append(pkpd.dose_mg(unit, one, bsa_m2=pop.bsa_m2, weight_kg=pop.weight_kg, crcl_ml_min=pop.creatinine_clearance_ml_min))
    return torch.stack(cols, dim=1)


def _exp_threshold(keys: torch.Tensor, counter: int | torch.Tensor) -> torch.Tensor:
    return -torch.log(rng.uniform(keys, counter))


def simulate(
    pop: popmod.Population,
    lat: Latent,
    assignment: Assignment,
    schedule: Schedule,
    params: ModelParameters,
    library: RegimenLibrary,
    *,
    seed: int,
    replicate: int | torch.Tensor = 0,
    tables: Tables | None = None,
    start: Start | None = None,
    until_study_progression: bool = False,
) -> Outcome:
    """Simulate every row from day 0 (randomisation, baseline scan) to ``schedule.days - 1``.

    ``start`` sets the burden and class exposure of rows entering after a prior line; by default
    rows start untreated at their latent baseline burden. ``until_study_progression`` stops
    simulating a row once it has progressed or died on its study line (its outputs after that day
    are then not meaningful: used to find the state at progression of a prior line).

    Finished rows (dead, or past study progression with ``until_study_progression``) leave the
    batch once a tenth of it has finished (``COMPACT_SHARE``); the results are the same to the bit
    as stepping every row to the end, since every step of the day is per row.
    """
    dev = pop.patient_id.device
    f64 = torch.float64
    n = len(pop)
    T = tables if tables is not None else build_tables(params, library, dev)
    pid = pop.patient_id
    keys = {s: rng.patient_keys(seed, s, pid, replicate) for s in (
        ModelStream.DEATH, ModelStream.ADVERSE_EVENT, ModelStream.FEBRILE_NEUTROPENIA,
        ModelStream.NEW_LESION, ModelStream.SCAN, ModelStream.PATHWAY, ModelStream.ERADICATION)}
    tumour, meas, tox, surv = (params.section(s) for s in ("tumour", "measurement", "toxicity", "survival"))
    rt_par = params.section("radiotherapy")
    probs = params.get("pathway.next_line_probability")
    next_line_p = torch.tensor(probs, dtype=f64, device=dev)
    t790m_p = params.get("pathway.t790m_probability")
    disc_rate = params.get("economics.discount_rate_per_year")
    cost_iv = params.get("economics.cost_per_iv_visit_gbp")
    cost_rt = params.get("economics.cost_per_rt_fraction_gbp")
    fn_h3 = tox["febrile_neutropenia_per_day"]["grade3"]
    fn_h4 = tox["febrile_neutropenia_per_day"]["grade4"]
    rt_potency = params.drug_class("radiotherapy")["potency_per_day"]
    alpha = lat.radio_alpha_per_gy
    ab = rt_par["alpha_beta_gy"]
    # tumour killed by radiotherapy stays on scans until it is cleared (``doomed``, cm3), at
    # ``radiotherapy.doomed_clearance_per_day``; an infinite rate clears it on the day it dies
    clear_rt = math.exp(-rt_par["doomed_clearance_per_day"])

    # restrict the drug and class axes to what these rows can receive (the daily cost scales
    # with them); results equal the full axes' up to the rounding of sums over the drug axis
    regs = reachable_regimens(T, assignment)
    used_d = torch.nonzero(T.dose[regs].flatten(0, 2).gt(0).any(0)).squeeze(1)
    used_d_list = used_d.tolist()
    rt_pos = used_d_list.index(RT) if RT in used_d_list else None
    used_k = sorted({int(c) for c in T.class_matrix[used_d].argmax(1).tolist()})
    dose_tab = T.dose[..., used_d]
    max_cyc_tab = T.drug_max_cycles[..., used_d]
    fn_tab = T.fn_factor[:, used_d]
    class_m = T.class_matrix[used_d][:, used_k]
    myelo = T.myelo[used_d]
    price = T.price[used_d]
    iv_drug = T.iv_drug[used_d].to(f64)
    inv_ref = T.inv_ref_amount[used_d]
    bits = T.bit[used_d]
    nonheme = T.nonheme[used_k]
    rt_k = used_k.index(RT_CLASS) if RT_CLASS in used_k else None

    # per-row constants
    mult = unit_multiplier(pop, library)[:, used_d]
    # carboplatin clearance is the patient's GFR + 25 mL/min (Calvert 1989), so AUC dosing gives
    # every patient the target exposure; other drugs vary by the latent clearance multiplier
    cl = lat.clearance_multiplier.clone()
    crcl = pop.creatinine_clearance_ml_min.clamp(max=pkpd.CALVERT_GFR_CAP_ML_MIN)
    cl[:, CARBOPLATIN] = (crcl + pkpd.CALVERT_NONRENAL_CLEARANCE_ML_MIN) / (
        REFERENCE_CRCL_ML_MIN + pkpd.CALVERT_NONRENAL_CLEARANCE_ML_MIN
    )
    k_row = (T.k_per_day * cl)[:, used_d]
    decay_row = torch.exp(-k_row)
    mean_factor = (1.0 - decay_row) / k_row  # mean amount over a day = (a + dose) * this
    potency_row = (lat.sensitivity * T.potency)[:, used_k]  # (rows, used classes)
    # Norton-Simon: a cytotoxic class kills in proportion to the tumour's own growth rate (to the
    # power `cytotoxic_kill_growth_exponent`), relative to the median advanced adenocarcinoma,
    # whose kill is the class potency.
    ns_power = tumour["cytotoxic_kill_growth_exponent"]
    if ns_power != 0.0:
        cyto = torch.tensor([DRUG_CLASSES[k] in CYTOTOXIC_CLASSES for k in used_k], dtype=torch.bool, device=dev)
        g_ref = tumour["growth_rate_per_day"]["adenocarcinoma"] * tumour["advanced_growth_multiplier"]
        ns_factor = (lat.growth_rate_per_day / g_ref) ** ns_power
        potency_row = torch.where(cyto, potency_row * ns_factor[:, None], potency_row)
    if rt_k is not None:
        # radiotherapy kills through the daily linear-quadratic term only; its class intensity
        # marks fraction days (adverse events, days on the class), not a drug log-kill
        potency_row[:, rt_k] = 0.0
    # PD-(L)1 blockade acts in the rows that respond in the context of the line that gives it
    # (latent.IMMUNE_CONTEXTS: with chemotherapy or not, after progression or not); set on day 0
    # and at the start of each later line that gives it, below
    immune_k = torch.tensor([DRUG_CLASSES[k] in IMMUNE for k in used_k], dtype=torch.bool, device=dev)
    has_immune = bool(immune_k.any())
    potency_line = potency_row
    res_decay = torch.exp(-T.resistance[used_k])
    growth = lat.growth_rate_per_day
    log_ref = sld_to_log_volume(torch.tensor(surv["reference_sld_mm"], dtype=f64))
    base_log_h = (
        math.log(surv["baseline_per_day"])
        + surv["ecog_log_hazard"] * pop.ecog.to(f64)
        + surv["age_log_hazard_per_decade"] * (pop.age_years - 65.0) / 10.0
    )
    beta_b = surv["burden_per_log_volume"]
    log_hr_progressed = math.log(surv["post_progression_hazard_ratio"])
    floor_logv = sld_to_log_volume(torch.tensor(0.1, dtype=f64))
    undetect = tumour["undetectable_sld_mm"]
    nl_rate = tumour["new_lesion_rate_per_day"]

    # state: logv is the living (growing) burden; scans see it plus the doomed volume
    logv = sld_to_log_volume(lat.baseline_sld_mm) if start is None else start.log_volume.clone()
    doomed = torch.zeros(n, dtype=f64, device=dev)
    if start is not None and start.doomed_volume is not None:
        doomed = start.doomed_volume.to(dev, f64).clone()
    track_doomed = rt_pos is not None or bool((doomed > 0).any())
    # Radiotherapy can take the living tumour below the volume floor, which only keeps the log
    # volume finite: ``depth`` (<= 0) is how far below it the surviving clonogens are. Only a
    # radiotherapy fraction opens it (a tumour that drugs alone shrink stays clamped at the floor,
    # as before); once open, growth and drug kill move it too. The tumour is
    # eradicated, for good (depth -inf), when its clonogens fall below an Exp(1) threshold: the
    # Poisson tumour-control probability exp(-N) of N expected surviving clonogens.
    depth = torch.zeros(n, dtype=f64, device=dev)
    if start is not None and start.clonogen_depth is not None:
        depth = start.clonogen_depth.to(dev, f64).clone()
    track_depth = rt_pos is not None or bool((depth < 0).any())
    log_cure = torch.log(_exp_threshold(keys[ModelStream.ERADICATION], 0) / rt_par["clonogens_per_cm3"])
    line_base_logv = logv.clone()
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    reg = assignment.regimen.to(dev).clone()
    on_tx = reg != T.bsc
    phase = torch.zeros(n, dtype=torch.int64, device=dev)
    cycle = torch.zeros_like(phase)
    cday = torch.zeros_like(phase)
    delay = torch.zeros_like(phase)
    line_idx = torch.zeros_like(phase)
    line_start = torch.zeros_like(phase)
    factor = torch.ones((n, len(used_d_list)), dtype=f64, device=dev)
    amount = torch.zeros_like(factor)
    texp = torch.zeros((n, len(DRUG_CLASSES)), dtype=f64, device=dev)
    if start is not None:
        texp = start.class_exposure_days.clone()
    texp_u = texp[:, used_k].clone()
    resist = torch.exp(-T.resistance[used_k] * texp_u)
    prog_logv = torch.full((n,), float("nan"), dtype=f64, device=dev)
    prog_doomed = torch.full((n,), float("nan"), dtype=f64, device=dev)
    prog_texp_u = torch.full_like(texp_u, float("nan"))
    fr = toxicity.friberg_initial(lat.anc_baseline_1e9_per_l)
    circ0 = lat.anc_baseline_1e9_per_l

    # clocks: cumulative hazard and exponential threshold
    H_death = torch.zeros(n, dtype=f64, device=dev)
    E_death = _exp_threshold(keys[ModelStream.DEATH], 0)
    H_ae = torch.zeros_like(H_death)
    n_ae = torch.zeros_like(phase)
    E_ae = _exp_threshold(keys[ModelStream.ADVERSE_EVENT], 0)
    H_fn = torch.zeros_like(H_death)
    n_fn = torch.zeros_like(phase)
    E_fn = _exp_threshold(keys[ModelStream.FEBRILE_NEUTROPENIA], 0)
    H_nl = torch.zeros_like(H_death)
    E_nl = _exp_threshold(keys[ModelStream.NEW_LESION], 0)
    new_lesion = torch.zeros(n, dtype=torch.bool, device=dev)

    # measurement / RECIST (baseline scan on day 0)
    baseline_mm = _measure(_seen(logv, doomed, track_doomed), keys[ModelStream.SCAN], 0, meas, undetect)
    nadir_mm = baseline_mm.clone()
    last_code = torch.full((n,), SD, dtype=torch.int64, device=dev)
    progressed_any = torch.full((n,), start is not None and start.progressed, dtype=torch.bool, device=dev)
    responder = lat.immune_context_responder
    cross = assignment.crossover_regimen.to(dev)
    if has_immune:
        potency_line = _immune_gated(potency_row, immune_k, responder, T.with_chemotherapy[reg], progressed_any)

    # outcomes
    pfs_days = torch.full((n,), float(schedule.days), dtype=f64, device=dev)
    pfs_event = torch.zeros(n, dtype=torch.bool, device=dev)
    os_days = pfs_days.clone()
    os_event = torch.zeros_like(pfs_event)
    first_resp = torch.full((n,), -1, dtype=torch.int64, device=dev)
    confirmed = torch.zeros_like(pfs_event)
    confirmed_cr = torch.zeros_like(pfs_event)
    sd_seen = torch.zeros_like(pfs_event)
    any_scan = torch.zeros_like(pfs_event)
    first_pd = torch.zeros_like(pfs_event)
    g3_study = torch.zeros_like(pfs_event)
    g3_day = torch.full((n,), -1, dtype=torch.int64, device=dev)
    worst = torch.zeros(n, dtype=torch.int64, device=dev)
    days_g3 = torch.zeros_like(worst)
    nonheme_left = torch.zeros_like(worst)
    fn_left = torch.zeros_like(worst)
    qaly = torch.zeros(n, dtype=f64, device=dev)
    cost = torch.zeros_like(qaly)
    lines = torch.ones_like(worst)
    study_tx_days = torch.zeros_like(worst)
    tx_death = torch.zeros_like(pfs_event)
    fn_any = torch.zeros_like(pfs_event)

    row_schedule = None
    if schedule.row_scan_days is None:
        scans = set(int(d) for d in schedule.scan_days if 0 < int(d) < schedule.days)
        scan_table = None
    else:
        scans = {int(d) for days_ in schedule.row_scan_days for d in days_ if 0 < int(d) < schedule.days}
        scan_table = torch.zeros((len(schedule.row_scan_days), schedule.days + 1), dtype=torch.bool, device=dev)
        for i, days_ in enumerate(schedule.row_scan_days):
            scan_table[i, [d for d in days_ if 0 < d < schedule.days]] = True
        row_schedule = schedule.row_schedule.to(dev)
    max_phase = dose_tab.shape[1] - 1
    rec = _Recorder(schedule.days, n, dev) if schedule.record else None
    # the regimen's and the phase's rules of each row, gathered when its line or phase changes
    # rather than every day
    r_hold, r_delay, r_phases, r_days = _regimen_rules(T, reg)
    p_length, p_cycles, p_cap = _phase_rules(T, max_cyc_tab, reg, phase.clamp(max=max_phase))
    rows = torch.arange(n, device=dev)  # the original index of each row still simulated
    results = None  # full-size results, once rows have been dropped
    event_days = int(tox["nonheme_event_days"])

    # discounted years of each day (NICE: annual rate, continuous within the year)
    day_weight = economics.daily_discount_weight(schedule.days, disc_rate).tolist()
    for t in range(schedule.days):
        w_t = day_weight[t]
        disc_t = w_t * economics.DAYS_PER_YEAR
        # ---- state at the start of day t; scan and RECIST ---------------------------------------
        if rec is not None:
            rec.day(t, _seen(logv, doomed, track_doomed), fr[:, 4], reg, line_idx, alive)
        pd_now = torch.zeros_like(alive)
        if t in scans:
            m = _measure(_seen(logv, doomed, track_doomed), keys[ModelStream.SCAN], t, meas, undetect)
            code = recist.classify(m, baseline_mm, nadir_mm, new_lesion).to(torch.int64)
            scanned = alive if scan_table is None else alive & scan_table[row_schedule, t]
            nadir_mm = torch.where(scanned, torch.minimum(nadir_mm, m), nadir_mm)
            last_code = torch.where(scanned, code, last_code)
            pd_now = scanned & (code == PD)
            study = scanned & (line_idx == 0) & ~pfs_event
            resp = study & ((code == CR) | (code == PR))
            newly = resp & (first_resp < 0)
            confirm = resp & (first_resp >= 0) & (t - first_resp >= CONFIRMATION_DAYS)
            confirmed_cr |= confirm & (code == CR)
            confirmed |= confirm
            first_resp = torch.where(newly, torch.full_like(first_resp, t), first_resp)
            sd_seen |= study & (code != PD) & (t >= MIN_SD_DAYS)
            first_pd |= study & (code == PD) & ~any_scan
            any_scan |= study
            if rec is not None:
                rec.scan(t, m, code, scanned)
            study_pd = pd_now & (line_idx == 0) & ~pfs_event
            prog_logv = torch.where(study_pd, logv, prog_logv)
            prog_doomed = torch.where(study_pd, doomed, prog_doomed)
            prog_texp_u = torch.where(study_pd.unsqueeze(1), texp_u, prog_texp_u)
            pfs_days = torch.where(study_pd, torch.full_like(pfs_days, t), pfs_days)
            pfs_event |= study_pd
            progressed_any |= pd_now
        # ---- next line at progression: it starts today -------------------------------------------
        moving = pd_now
        if bool(moving.any()):
            counter = line_idx
            u_next, u_t790m = rng.uniform_pair(keys[ModelStream.PATHWAY], counter)
            nxt = T.next_regimen[reg]
            nxt = torch.where((line_idx == 0) & (cross >= 0), cross, nxt)
            t790m_case = T.first_gen_egfr[reg] & (nxt == T.osimertinib) & (u_t790m >= t790m_p)
            nxt = torch.where(t790m_case, torch.full_like(nxt, T.t790m_fallback), nxt)
            line_reached = (line_idx + assignment.start_line + 1).clamp(max=4) - 2  # 0 = line 2
            gets = (u_next < next_line_p[line_reached.clamp(min=0)]) & (nxt >= 0)
            nxt = torch.where(gets, nxt, torch.full_like(nxt, T.bsc))
            reg = torch.where(moving, nxt, reg)
            on_tx = torch.where(moving, nxt != T.bsc, on_tx)
            zero = torch.zeros_like(phase)
            phase = torch.where(moving, zero, phase)
            cycle = torch.where(moving, zero, cycle)
            cday = torch.where(moving, zero, cday)
            delay = torch.where(moving, zero, delay)
            line_start = torch.where(moving, torch.full_like(line_start, t), line_start)
            lines += (moving & (nxt != T.bsc)).to(torch.int64)
            line_idx = line_idx + moving
            factor = torch.where(moving.unsqueeze(1), torch.ones_like(factor), factor)
            line_base_logv = torch.where(moving, logv, line_base_logv)
            H_nl = torch.where(moving, torch.zeros_like(H_nl), H_nl)
            E_nl = torch.where(moving, _exp_threshold(keys[ModelStream.NEW_LESION], line_idx), E_nl)
            new_lesion &= ~moving
            # the progression scan is the new line's RECIST baseline
            baseline_mm = torch.where(moving, m, baseline_mm)
            nadir_mm = torch.where(moving, m, nadir_mm)
            last_code = torch.where(moving, torch.full_like(last_code, SD), last_code)
            i = torch.nonzero(moving).squeeze(1)
            r_hold[i], r_delay[i], r_phases[i], r_days[i] = _regimen_rules(T, reg[i])
            p_length[i], p_cycles[i], p_cap[i] = _phase_rules(T, max_cyc_tab, reg[i], phase[i])
            if has_immune:
                # a line without PD-(L)1 blockade keeps the gate of the line that gave it: the
                # antibody still circulating (half-lives of weeks) acts in the context it was given in
                gated = _immune_gated(potency_row, immune_k, responder, T.with_chemotherapy[reg], progressed_any)
                regate = moving & T.with_immunotherapy[reg]
                potency_line = torch.where(regate.unsqueeze(1), gated, potency_line)
        # ---- dosing -------------------------------------------------------------------------
        treating = alive & on_tx
        ph = phase.clamp(max=max_phase)
        anc = fr[:, 4]
        cycle_start = cday == 0
        held = treating & cycle_start & (anc < r_hold)
        give = treating & ~held
        dose = dose_tab[reg, ph, cday]  # (rows, used drugs) in regimen units
        allowed = (p_cap < 0) | (cycle.unsqueeze(1) < p_cap)
        dose = dose.mul_(mult).mul_(factor).masked_fill_(~(give.unsqueeze(1) & allowed), 0.0)
        rt_gy = dose[:, rt_pos] if rt_pos is not None else None
        # ---- cycle bookkeeping ---------------------------------------------------------------
        delay = torch.where(held, delay + 1, torch.where(give & cycle_start, torch.zeros_like(delay), delay))
        stop = held & (delay > r_delay)
        cday = torch.where(give, cday + 1, cday)
        wrap = give & (cday >= p_length)
        cday = torch.where(wrap, torch.zeros_like(cday), cday)
        cycle = torch.where(wrap, cycle + 1, cycle)
        next_phase = wrap & (p_cycles >= 0) & (cycle >= p_cycles)
        phase = torch.where(next_phase, phase + 1, phase)
        cycle = torch.where(next_phase, torch.zeros_like(cycle), cycle)
        if bool(next_phase.any()):
            i = torch.nonzero(next_phase).squeeze(1)
            p_length[i], p_cycles[i], p_cap[i] = _phase_rules(T, max_cyc_tab, reg[i], phase[i].clamp(max=max_phase))
        done = phase >= r_phases
        capped = (r_days >= 0) & (t + 1 - line_start >= r_days)
        on_tx = on_tx & ~stop & ~done & ~capped
        study_tx_days += (treating & (line_idx == 0)).to(torch.int64)
        # ---- pharmacokinetics -> exposure -----------------------------------------------------
        total = amount + dose
        intensity = total * mean_factor * inv_ref  # 0 for radiotherapy (inv_ref = 0)
        amount = total * decay_row
        cls_int = intensity @ class_m  # (rows, used classes)
        if rt_k is not None:
            cls_int[:, rt_k] = (rt_gy > 0).to(f64)
        # ---- tumour -------------------------------------------------------------------------
        active = (cls_int > 1e-3) & alive.unsqueeze(1)  # a dead patient is exposed to nothing
        kill = torch.mul(potency_line, cls_int).mul_(resist).sum(1)
        resist = torch.where(active, resist * res_decay, resist)
        texp_u += active
        step = growth - kill
        if rt_gy is not None:
            rt_kill = rt_potency * (alpha * rt_gy + (alpha / ab) * rt_gy * rt_gy)
            # the cells a fraction kills die over the following weeks: doomed, not living
            killed = torch.exp(logv + step) * -torch.expm1(-rt_kill)
            doomed = torch.where(alive, (doomed + killed) * clear_rt, doomed)
            step = step - rt_kill
        elif track_doomed:
            doomed = torch.where(alive, doomed * clear_rt, doomed)
        if track_depth:
            deep = alive & (depth < 0)
            if rt_gy is not None:
                deep = deep | (alive & (rt_kill > 0))
            true_new = logv + depth + step
            depth = torch.where(deep, (true_new - floor_logv).clamp(max=0.0), depth)
            depth = torch.where(deep & (true_new < log_cure), torch.full_like(depth, -math.inf), depth)
            step = torch.where(deep, true_new - logv, step)
        logv = torch.where(alive, (logv + step).clamp(min=floor_logv), logv)
        # ---- myelosuppression (Friberg) and adverse events ------------------------------------
        effect = intensity @ myelo
        fr = _friberg_day(fr, effect, circ0)
        anc = fr[:, 4]
        anc_grade = toxicity.neutrophil_grade(anc).to(torch.int64)
        fn_h = torch.where(anc_grade >= 4, fn_h4, torch.where(anc_grade >= 3, fn_h3, 0.0))
        H_fn = H_fn + fn_h * alive
        fn_now = alive & (H_fn >= E_fn)
        H_ae = H_ae + (cls_int @ nonheme) * alive
        ae_now = alive & (H_ae >= E_ae)
        event_rows = torch.nonzero(fn_now | ae_now).squeeze(1)
        if event_rows.numel() > 0:
            # draws and updates on the rows with an event only (a few per day): the counter-based
            # streams give each row the same numbers as drawing for every row
            i = event_rows
            fn_i, ae_i = fn_now[i], ae_now[i]
            n_fn[i] += fn_i
            k_fn = keys[ModelStream.FEBRILE_NEUTROPENIA][i]
            E_fn[i] = torch.where(fn_i, H_fn[i] + _exp_threshold(k_fn, 2 * n_fn[i]), E_fn[i])
            u_fn_death = rng.uniform(k_fn, 2 * n_fn[i] + 1)
            factor[i] = torch.where(fn_i.unsqueeze(1), factor[i] * fn_tab[reg[i]], factor[i])
            fn_death = fn_i & (u_fn_death < tox["febrile_neutropenia_death_probability"])
            fn_left[i] = torch.where(fn_i, event_days, fn_left[i])
            fn_any |= fn_now
            n_ae[i] += ae_i
            k_ae = keys[ModelStream.ADVERSE_EVENT][i]
            E_ae[i] = torch.where(ae_i, H_ae[i] + _exp_threshold(k_ae, 3 * n_ae[i]), E_ae[i])
            u_grade, u_disc = rng.uniform_pair(k_ae, 3 * n_ae[i] + 1)
            u_death = rng.uniform(k_ae, 3 * n_ae[i] + 2)
            grade4 = ae_i & (u_grade < tox["grade4_share_of_nonheme"])
            ae_death = grade4 & (u_death < tox["treatment_death_probability"])
            on_tx[i] &= ~(ae_i & (u_disc < tox["discontinue_probability"]))
            nonheme_left[i] = torch.where(ae_i, event_days, nonheme_left[i])
            event_grade = torch.where(grade4, 4, 3)  # every row of i has an event
            worst[i] = torch.maximum(worst[i], event_grade)
            tdeath = torch.zeros_like(alive)
            tdeath[i] = fn_death | ae_death
            tx_death |= tdeath
        else:
            tdeath = torch.zeros_like(alive)
        g3_today = alive & ((anc_grade >= 3) | (nonheme_left > 0) | (fn_left > 0))
        worst = torch.maximum(worst, torch.where(alive, anc_grade, 0))
        days_g3 += g3_today.to(torch.int64)
        g3_first = g3_today & (line_idx == 0) & ~g3_study
        g3_day = torch.where(g3_first, torch.full_like(g3_day, t), g3_day)
        g3_study |= g3_first
        # ---- new lesions ------------------------------------------------------------------------
        H_nl = H_nl + nl_rate * torch.exp(logv - line_base_logv) * alive
        new_lesion |= alive & (H_nl >= E_nl)
        # ---- death ------------------------------------------------------------------------------
        h = torch.exp(base_log_h + beta_b * (logv - log_ref) + log_hr_progressed * progressed_any)
        H_death = H_death + h * alive
        dies = alive & ((H_death >= E_death) | tdeath)
        # ---- outcomes of the day ------------------------------------------------------------------
        study_death = dies & (line_idx == 0) & ~pfs_event
        pfs_days = torch.where(study_death, torch.full_like(pfs_days, t), pfs_days)
        pfs_event |= study_death
        os_days = torch.where(dies, torch.full_like(os_days, t), os_days)
        os_event |= dies
        worst = torch.where(dies & tdeath, torch.full_like(worst, 5), worst)
        responding = (last_code == CR) | (last_code == PR)
        util = economics.daily_utility(
            progressed_any, responding & ~progressed_any, anc_grade >= 3, fn_left > 0, nonheme_left > 0
        )
        qaly += torch.where(alive, util, torch.zeros_like(util)) * w_t
        iv_visit = (dose @ iv_drug) > 0  # doses are >= 0: any IV drug given today
        day_cost = dose @ price + cost_iv * iv_visit
        if rt_gy is not None:
            day_cost = day_cost + cost_rt * (rt_gy > 0)
        cost += day_cost * disc_t
        nonheme_left = (nonheme_left - 1).clamp(min=0)
        fn_left = (fn_left - 1).clamp(min=0)
        if rec is not None:
            rec.drugs_of_day(t, dose, bits, alive)
        alive = alive & ~dies
        # ---- drop finished rows ------------------------------------------------------------------
        # a dead row's results no longer change (nor, with ``until_study_progression``, a row past
        # its study progression); every step above is per row, so the rows kept are unchanged
        live = alive & ~pfs_event if until_study_progression else alive
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live <= COMPACT_SHARE * len(rows):
            keep = torch.nonzero(live).squeeze(1)
            results = _store(results, rows, (
                pfs_days, pfs_event, os_days, os_event, any_scan, first_pd, sd_seen, confirmed, confirmed_cr,
                g3_study, g3_day, worst, days_g3, qaly, cost, lines, study_tx_days, tx_death, fn_any,
                prog_logv, prog_doomed, prog_texp_u, logv, doomed, depth, texp_u
            ))
            rows = rows[keep]
            keys = {s: k[keep] for s, k in keys.items()}
            (
                pfs_days, pfs_event, os_days, os_event, any_scan, first_pd, sd_seen, confirmed, confirmed_cr,
                g3_study, g3_day, worst, days_g3, qaly, cost, lines, study_tx_days, tx_death, fn_any,
                prog_logv, prog_doomed, prog_texp_u, logv, doomed, depth, texp_u,
            ) = _take(keep,
                pfs_days, pfs_event, os_days, os_event, any_scan, first_pd, sd_seen, confirmed, confirmed_cr,
                g3_study, g3_day, worst, days_g3, qaly, cost, lines, study_tx_days, tx_death, fn_any,
                prog_logv, prog_doomed, prog_texp_u, logv, doomed, depth, texp_u,
            )
            (
                alive, reg, on_tx, phase, cycle, cday, delay, line_idx, line_start, factor, amount, resist,
                potency_line, fr, H_death, E_death, H_ae, n_ae, E_ae, H_fn, n_fn, E_fn, H_nl, E_nl,
                new_lesion, baseline_mm, nadir_mm, last_code, progressed_any, line_base_logv, nonheme_left,
                fn_left, first_resp, r_hold, r_delay, r_phases, r_days, p_length, p_cycles, p_cap,
            ) = _take(keep,
                alive, reg, on_tx, phase, cycle, cday, delay, line_idx, line_start, factor, amount, resist,
                potency_line, fr, H_death, E_death, H_ae, n_ae, E_ae, H_fn, n_fn, E_fn, H_nl, E_nl,
                new_lesion, baseline_mm, nadir_mm, last_code, progressed_any, line_base_logv, nonheme_left,
                fn_left, first_resp, r_hold, r_delay, r_phases, r_days, p_length, p_cycles, p_cap,
            )
            (
                alpha, mult, decay_row, mean_factor, potency_row, growth, base_log_h, log_cure, circ0, cross,
                responder, row_schedule,
            ) = _take(keep,
                alpha, mult, decay_row, mean_factor, potency_row, growth, base_log_h, log_cure, circ0, cross,
                responder, row_schedule,
            )
            if rec is not None:
                rec.rows = rows

    if results is not None:  # rows were dropped: every row's results, in the original order
        (
            pfs_days, pfs_event, os_days, os_event, any_scan, first_pd, sd_seen, confirmed, confirmed_cr,
            g3_study, g3_day, worst, days_g3, qaly, cost, lines, study_tx_days, tx_death, fn_any, prog_logv,
            prog_doomed, prog_texp_u, logv, doomed, depth, texp_u,
        ) = _store(results, rows, (
            pfs_days, pfs_event, os_days, os_event, any_scan, first_pd, sd_seen, confirmed, confirmed_cr,
            g3_study, g3_day, worst, days_g3, qaly, cost, lines, study_tx_days, tx_death, fn_any, prog_logv,
            prog_doomed, prog_texp_u, logv, doomed, depth, texp_u,
        ))
    # classes these rows never received keep their starting exposure (0 unless ``start``)
    prog_texp = texp.clone()
    prog_texp[:, used_k] = prog_texp_u
    texp[:, used_k] = texp_u
    best = torch.full((n,), NE, dtype=torch.int64, device=dev)
    best = torch.where(any_scan & first_pd, torch.full_like(best, PD), best)
    best = torch.where(any_scan & ~first_pd, torch.full_like(best, PD), best)
    best = torch.where(sd_seen, torch.full_like(best, SD), best)
    best = torch.where(confirmed, torch.full_like(best, PR), best)
    best = torch.where(confirmed_cr, torch.full_like(best, CR), best)
    return Outcome(
        pfs_days=pfs_days,
        pfs_event=pfs_event,
        os_days=os_days,
        os_event=os_event,
        best_response=best.to(torch.int8),
        grade3_ae_study=g3_study,
        grade3_ae_day=g3_day,
        worst_grade=worst.to(torch.int8),
        days_grade3plus=days_g3,
        qalys=qaly,
        cost_gbp=cost,
        lines_received=lines,
        study_treatment_days=study_tx_days,
        treatment_death=tx_death,
        febrile_neutropenia=fn_any,
        progression_log_volume=prog_logv,
        progression_class_exposure=prog_texp,
        progression_doomed_volume=prog_doomed,
        final_log_volume=logv,
        final_class_exposure=texp,
        final_doomed_volume=doomed,
        final_clonogen_depth=depth,
        record=rec.finish() if rec is not None else None,
    )


# drop finished rows once at most this share of the rows simulated is still live (each drop
# gathers every row tensor once: about the cost of a day)
COMPACT_SHARE = 0.9
STEADY_RTOL = 1e-12  # a row this close to its Friberg steady state, without drug, is left there


def _immune_gated(
    potency: torch.Tensor, immune_k: torch.Tensor, responder: torch.Tensor, with_chemo: torch.Tensor, progressed: torch.Tensor
) -> torch.Tensor:
    """``potency`` (rows, used classes) with the immune classes zeroed in the rows that do not
    respond in the context of their line (``responder``: ``Latent.immune_context_responder``, column
    ``latent.IMMUNE_CONTEXTS`` index)."""
    context = with_chemo.to(torch.int64) + 2 * progressed.to(torch.int64)
    responds = responder.gather(1, context.unsqueeze(1))
    return torch.where(immune_k.unsqueeze(0) & ~responds, torch.zeros_like(potency), potency)


def _friberg_day(fr: torch.Tensor, effect: torch.Tensor, circ0: torch.Tensor) -> torch.Tensor:
    """One day of ``toxicity.friberg_step`` for the rows that move.

    A row without cytotoxic exposure (E below ``STEADY_RTOL``) at its steady state (every compartment at Circ0) has a zero
    derivative, so only the other rows are integrated; the result equals stepping every row up
    to deviations below ``STEADY_RTOL`` of Circ0 (tested against the full step).
    """
    moving = (effect > STEADY_RTOL) | ((fr - circ0.unsqueeze(1)).abs().amax(1) > STEADY_RTOL * circ0)
    if not bool(moving.any()):
        return fr
    out = fr.clone()
    for rows, substeps in ((moving & (effect <= STRONG_EFFECT), FRIBERG_SUBSTEPS), (effect > STRONG_EFFECT, FRIBERG_SUBSTEPS_STRONG)):
        if not bool(rows.any()):
            continue
        idx = torch.nonzero(rows).squeeze(1)
        out[idx] = _friberg_rk4(fr[idx], effect[idx], circ0[idx], substeps)
    return out


def _friberg_rk4(fr: torch.Tensor, effect: torch.Tensor, circ0: torch.Tensor, substeps: int) -> torch.Tensor:
    """``toxicity.friberg_step`` over one day, written on the five compartments separately.

    Same equations and RK4 scheme (Friberg 2002, brief §3.1), without stacking the state on every
    evaluation; tests/nsclc/test_simulator.py compares it with ``toxicity.friberg_step``. The
    arithmetic runs in place in buffers allocated once per call, in the order of the plain form
    (k1 = f(y), y + (h/2) k1, ..., y + (h/6)((k1 + 2 k2) + 2 k3) + k4), so the result is the same
    to the bit; this is the simulator's most frequent step (about 350 tensor operations per day).
    """
    ome = 1.0 - effect.clamp(0.0, MAX_DRUG_EFFECT)
    k = 4.0 * 24.0 / toxicity.FRIBERG_MTT_H
    g = toxicity.FRIBERG_GAMMA
    log_c0 = torch.log(circ0)
    y = [c.clone() for c in fr.unbind(1)]
    slopes = [[torch.empty_like(log_c0) for _ in range(5)] for _ in range(4)]
    y_stage = [torch.empty_like(log_c0) for _ in range(5)]
    tmp, tmp2 = torch.empty_like(log_c0), torch.empty_like(log_c0)

    def rhs(p: list[torch.Tensor], out: list[torch.Tensor]) -> None:
        # feedback (Circ0 / Circ)^gamma as exp(gamma (log Circ0 - log Circ))
        torch.clamp(p[4], min=1e-9, out=tmp)
        tmp.log_()
        torch.sub(log_c0, tmp, out=tmp)
        tmp.mul_(g).exp_()
        tmp.mul_(ome).sub_(1.0)
        torch.mul(p[0], k, out=out[0]).mul_(tmp)  # k Prol ((1 - E) feedback - 1)
        for j in range(1, 5):  # transit compartments and circulation: k (previous - this)
            torch.sub(p[j - 1], p[j], out=out[j]).mul_(k)

    def stage(slope: list[torch.Tensor], step: float) -> list[torch.Tensor]:
        for j in range(5):
            torch.mul(slope[j], step, out=y_stage[j]).add_(y[j])
        return y_stage

    h = 1.0 / substeps
    for _ in range(substeps):
        k1, k2, k3, k4 = slopes
        rhs(y, k1)
        rhs(stage(k1, 0.5 * h), k2)
        rhs(stage(k2, 0.5 * h), k3)
        rhs(stage(k3, h), k4)
        for j in range(5):
            torch.mul(k2[j], 2.0, out=tmp).add_(k1[j])
            tmp.add_(torch.mul(k3[j], 2.0, out=tmp2)).add_(k4[j]).mul_(h / 6.0)
            y[j].add_(tmp)
    return torch.stack(y, dim=1)


def _regimen_rules(T: Tables, reg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per row of regimen ``reg``: ANC to hold a cycle start, longest delay, phases, longest course."""
    return T.hold_anc[reg], T.max_delay[reg], T.n_phases[reg], T.max_treatment_days[reg]


def _phase_rules(T: Tables, max_cycles: torch.Tensor, reg: torch.Tensor, ph: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per row in phase ``ph`` of regimen ``reg``: cycle length, cycles (-1 = until progression),
    and each used drug's cycle cap (``max_cycles``: the drug-cycle cap table on the used drugs)."""
    return T.cycle_days[reg, ph], T.cycles[reg, ph], max_cycles[reg, ph]


def _take(keep: torch.Tensor, *tensors: torch.Tensor | None) -> tuple:
    """The rows ``keep`` of each tensor (None stays None)."""
    return tuple(None if x is None else x[keep] for x in tensors)


def _store(results: list | None, rows: torch.Tensor, parts: tuple) -> list:
    """``results`` (full-size tensors) with ``parts`` (the rows still simulated) written at ``rows``;
    before any row is dropped, ``parts`` themselves (later steps replace them, never write into them)."""
    if results is None:
        return list(parts)
    for full, part in zip(results, parts):
        full[rows] = part
    return results


def _seen(logv: torch.Tensor, doomed: torch.Tensor, track: bool) -> torch.Tensor:
    """Log volume a scan sees: the living burden plus the doomed volume (when there is one)."""
    return torch.logaddexp(logv, torch.log(doomed)) if track else logv


def _measure(logv: torch.Tensor, keys: torch.Tensor, day: int, meas, undetect: float) -> torch.Tensor:
    """Measured diameter sum (mm) on ``day``: 0 when undetectable, else true x lognormal + normal."""
    true = log_volume_to_sld(logv)
    z1, z2 = rng.uniform_pair(keys, day)
    n1 = torch.sqrt(-2.0 * torch.log(z1)) * torch.cos(2.0 * math.pi * z2)
    n2 = torch.sqrt(-2.0 * torch.log(z1)) * torch.sin(2.0 * math.pi * z2)
    m = recist.measured_sld_mm(true, torch.stack([n1, n2], dim=-1), meas["cv"], meas["sd_mm"])
    return torch.where(true < undetect, torch.zeros_like(m), m)


class _Recorder:
    def __init__(self, days: int, n: int, dev: torch.device) -> None:
        f64 = torch.float64
        self.sld = torch.full((days, n), float("nan"), dtype=f64, device=dev)
        self.meas = torch.full((days, n), float("nan"), dtype=f64, device=dev)
        self.code = torch.full((days, n), -1, dtype=torch.int8, device=dev)
        self.anc = torch.full((days, n), float("nan"), dtype=f64, device=dev)
        self.reg = torch.full((days, n), -1, dtype=torch.int16, device=dev)
        self.line = torch.full((days, n), -1, dtype=torch.int8, device=dev)
        self.drugs = torch.zeros((days, n), dtype=torch.int32, device=dev)
        self.alive = torch.zeros((days, n), dtype=torch.bool, device=dev)
        self.last = days
        self.rows: torch.Tensor | slice = slice(None)  # the rows still simulated

    def scan(self, t: int, m: torch.Tensor, code: torch.Tensor, alive: torch.Tensor) -> None:
        r = self.rows
        self.meas[t, r] = torch.where(alive, m, self.meas[t, r])
        self.code[t, r] = torch.where(alive, code.to(torch.int8), self.code[t, r])

    def day(self, t, logv, anc, reg, line, alive) -> None:
        """State at the start of day ``t``."""
        r = self.rows
        self.sld[t, r] = torch.where(alive, log_volume_to_sld(logv), self.sld[t, r])
        self.anc[t, r] = torch.where(alive, anc, self.anc[t, r])
        self.reg[t, r] = torch.where(alive, reg.to(torch.int16), self.reg[t, r])
        self.line[t, r] = torch.where(alive, line.to(torch.int8), self.line[t, r])
        self.alive[t, r] = alive

    def drugs_of_day(self, t, dose, bit, alive) -> None:
        """Drugs given on day ``t`` (after a progression scan that day: the new line's)."""
        r = self.rows
        self.drugs[t, r] = torch.where(alive, ((dose > 0).to(torch.int32) * bit).sum(1).to(torch.int32), self.drugs[t, r])

    def finish(self) -> Record:
        return Record(self.sld, self.meas, self.code, self.anc, self.reg, self.line, self.drugs, self.alive)
