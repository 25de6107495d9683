"""Scores models against the counterfactual ground truth, with patient-bootstrap intervals.

Tasks and metrics (one :class:`oncobench.schemas.Metric` row each, per difficulty tier):

* ``one_step_factual`` / ``one_step_counterfactual``, metric ``nrmse``: the literature's
  normalised RMSE, ``100 * sqrt(MSE) / 1150.35`` on unscaled volume (cm3), pooled over rows
  (ref §2 "all"; the normaliser is the death threshold), on the factual rows of the one-step
  set and on its three counterfactual treatment combinations.
* ``one_step``, metric ``nrmse_gap``: counterfactual minus factual nRMSE on the same patients
  (and the same bootstrap resamples), the price a model pays for having learnt from
  confounded data.
* ``tau_step_factual`` / ``tau_step_counterfactual``, metric ``nrmse_tau{k}``, and
  ``tau_step``, metric ``nrmse_gap_tau{k}``: the same k days ahead (k = 1..tau_max).
* ``recommend``: ``policy_value`` (mean true utility of the chosen regimens, cm3),
  ``regret`` (mean of best minus chosen true utility, >= 0) and ``oracle_agreement`` (share
  of patients given a regimen of the best true utility; ties count as agreement). Utility:
  see :mod:`oncobench.predictors`. The oracle and fixed policies appear as models, so the
  table carries its own reference points.

Only test patients are scored; models train on the other patients' factual trajectories.
Intervals are 95% percentile intervals over ``evaluate.bootstrap`` resamples of patients
(with replacement, within the tier); every metric of a tier uses the same resamples (a
function of the seed and tier only, so also the same across confounding strengths), so
differences between models, tasks and gammas are paired. Each metric is a ratio of per-patient
sums, so a resample is a matrix product of resample counts with per-patient sums.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from oncobench.cohort import is_test_patient
from oncobench.config import Config, ConfigError
from oncobench.counterfactuals import regimen_plan
from oncobench.io import ArtifactError
from oncobench.models import geng2017 as g
from oncobench.predictors import (
    COVARIATE_COLUMNS,
    START_COLUMNS,
    CheckedModel,
    ModelContext,
    RegimenPlan,
    builtin_models,
    load_plugin,
)

# ref §2 (metric): norm_const = TUMOUR_DEATH_THRESHOLD = 1150.35 cm3.
NRMSE_NORMALISER_CM3 = g.DEATH_VOLUME_CM3
CI_LEVEL = 0.95
# Cells of the bootstrap count matrix (resamples x patients) held at once.
_BOOTSTRAP_CELLS = 4_000_000
# Rows x days handed to one predict_volume call.
_PREDICT_CELLS = 2_000_000


def nrmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Normalised RMSE ``100 sqrt(mean((predicted - truth)^2)) / 1150.35`` (volumes in cm3)."""
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return _nrmse_from_mse(float(np.mean(err * err)))


def _nrmse_from_mse(mse: np.ndarray | float) -> np.ndarray | float:
    return 100.0 * np.sqrt(mse) / NRMSE_NORMALISER_CM3


def regimen_utilities(
    regimen_outcomes: pd.DataFrame,
    *,
    regimens: list[str],
    patient_ids: np.ndarray,
    horizon_days: int,
    cost_per_chemo_dose_cm3: float,
    cost_per_radio_fraction_cm3: float,
) -> pd.DataFrame:
    """True utility (cm3) per patient (index, in ``patient_ids`` order) and regimen (columns).

    ``-volume_cm3 - cost_chemo * chemo_doses - cost_radio * radio_dose_gy / 2`` on
    ``horizon_day == horizon_days``, averaged over replicates.
    """
    at = regimen_outcomes[regimen_outcomes["horizon_day"] == horizon_days]
    if at.empty:
        horizons = sorted(regimen_outcomes["horizon_day"].unique().tolist())
        raise ConfigError(
            f"config key 'evaluate.horizon_days': {horizon_days} has no regimen outcomes (horizons {horizons}); "
            "add it to counterfactuals.horizons_days"
        )
    fractions = at["radio_dose_gy"].to_numpy() / g.RADIO_DOSE_GY
    u = -at["volume_cm3"].to_numpy() - cost_per_chemo_dose_cm3 * at["chemo_doses"].to_numpy() - cost_per_radio_fraction_cm3 * fractions
    table = (
        pd.DataFrame({"patient_id": at["patient_id"].to_numpy(), "regimen": at["regimen"].to_numpy(), "u": u})
        .groupby(["patient_id", "regimen"], sort=False)["u"].mean()
        .unstack("regimen")
    )
    table = table.reindex(index=patient_ids, columns=regimens)
    if table.isna().any().any():
        missing = table.isna()
        pid = missing.any(axis=1).idxmax()
        reg = missing.loc[pid].idxmax()
        raise ArtifactError(
            f"regimen_outcomes: no outcome for test patient {pid} under regimen '{reg}' at horizon_day {horizon_days} "
            f"({int(missing.to_numpy().sum())} patient x regimen cells missing); expected every test patient under every configured regimen"
        )
    return table


# --------------------------------------------------------------------------- per-patient statistics
@dataclass
class _Stats:
    """Per-patient numerators and denominators of ratio statistics, over the test patients."""

    universe: np.ndarray  # sorted test patient ids
    keys: dict[tuple, int] = field(default_factory=dict)
    num: list[np.ndarray] = field(default_factory=list)
    den: list[np.ndarray] = field(default_factory=list)

    def position(self, patient_id: np.ndarray, where: str) -> np.ndarray:
        pos = np.searchsorted(self.universe, patient_id)
        pos_c = np.minimum(pos, len(self.universe) - 1)
        bad = self.universe[pos_c] != patient_id
        if bad.any():
            raise ArtifactError(
                f"{where}: patient {int(patient_id[bad][0])} is not a test patient of the cohort "
                f"({int(bad.sum())} rows); expected only test patients (counterfactuals.test_fraction split)"
            )
        return pos

    def add(self, key: tuple, num: np.ndarray, den: np.ndarray) -> None:
        self.keys[key] = len(self.num)
        self.num.append(np.asarray(num, dtype=np.float64))
        self.den.append(np.asarray(den, dtype=np.float64))

    def add_rows(self, key: tuple, pos: np.ndarray, values: np.ndarray) -> None:
        """Per-patient sum of ``values`` and row count (rows at universe positions ``pos``)."""
        n = len(self.universe)
        self.add(key, np.bincount(pos, weights=values, minlength=n), np.bincount(pos, minlength=n))


@dataclass(frozen=True)
class _MetricDef:
    model: str
    task: str
    metric: str
    kind: str  # "nrmse" (sqrt of a mean square), "gap" (nrmse of keys[0] - nrmse of keys[1]), "mean"
    keys: tuple[tuple, ...]


def _values(kind: str, ratios: list[np.ndarray]) -> np.ndarray:
    if kind == "nrmse":
        return _nrmse_from_mse(ratios[0])
    if kind == "gap":
        return _nrmse_from_mse(ratios[0]) - _nrmse_from_mse(ratios[1])
    return ratios[0]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _bootstrap_table(
    stats: _Stats, defs: list[_MetricDef], tiers: np.ndarray, *, replicates: int, seed: int, gamma: float
) -> pd.DataFrame:
    """Point estimates and percentile intervals of every metric, per tier."""
    num_all = np.stack(stats.num, axis=1)  # (patients, K)
    den_all = np.stack(stats.den, axis=1)
    tier_names = ["all"] + [str(t) for t in sorted(np.unique(tiers).tolist())]
    rows, order = [], []
    model_rank = {m: i for i, m in enumerate(dict.fromkeys(d.model for d in defs))}
    alpha = (1.0 - CI_LEVEL) / 2.0
    for tier_rank, tier_name in enumerate(tier_names):
        members = np.arange(len(tiers)) if tier_name == "all" else np.nonzero(tiers == int(tier_name))[0]
        n_t = len(members)
        if n_t == 0:
            continue
        num, den = num_all[members], den_all[members]
        point = _ratio(num.sum(0), den.sum(0))
        gen = np.random.default_rng(np.random.SeedSequence([seed, 0xB0075, 0 if tier_name == "all" else int(tier_name)]))
        boot = np.empty((replicates, num.shape[1]))
        chunk = max(1, _BOOTSTRAP_CELLS // n_t)
        for lo in range(0, replicates, chunk):
            b = min(chunk, replicates - lo)
            draw = gen.integers(0, n_t, size=(b, n_t))
            counts = np.bincount((draw + n_t * np.arange(b)[:, None]).ravel(), minlength=b * n_t).reshape(b, n_t)
            counts = counts.astype(np.float64)
            # einsum's own loops, not BLAS: the same sums whatever the thread count
            boot[lo : lo + b] = _ratio(
                np.einsum("bp,pk->bk", counts, num, optimize=False), np.einsum("bp,pk->bk", counts, den, optimize=False)
            )
        has = den > 0
        for def_rank, d in enumerate(defs):
            cols = [stats.keys[k] for k in d.keys]
            n_patients = int(np.all(has[:, cols], axis=1).sum())
            if n_patients == 0:
                continue
            estimate = float(_values(d.kind, [point[c] for c in cols]))
            dist = _values(d.kind, [boot[:, c] for c in cols])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo_q, hi_q = np.nanquantile(dist, [alpha, 1.0 - alpha]) if np.isfinite(dist).any() else (np.nan, np.nan)
            rows.append((d.model, d.task, float(gamma), tier_name, d.metric, estimate, float(lo_q), float(hi_q), n_patients))
            order.append((model_rank[d.model], def_rank, tier_rank))
    out = pd.DataFrame(rows, columns=["model", "task", "gamma", "tier", "metric", "estimate", "ci_low", "ci_high", "n"])
    out = out.astype({"n": np.int64, "gamma": np.float64})
    # model by model, each task's metrics with their tiers together
    rank = sorted(range(len(order)), key=order.__getitem__)
    return out.iloc[rank].reset_index(drop=True)


# --------------------------------------------------------------------------- predictions
def _predict(model: CheckedModel, start: pd.DataFrame, chemo: np.ndarray, radio: np.ndarray) -> np.ndarray:
    n, tau = chemo.shape
    size = max(1, _PREDICT_CELLS // max(tau, 1))
    if n <= size:
        return model.predict_volume(start, chemo, radio)
    parts = [
        model.predict_volume(start.iloc[lo : lo + size], chemo[lo : lo + size], radio[lo : lo + size])
        for lo in range(0, n, size)
    ]
    return np.concatenate(parts, axis=0)


def _plan_matrix(plans: pd.Series) -> np.ndarray:
    """Bool (rows, tau) matrix of '0'/'1' plan strings of one length."""
    strings = plans.to_numpy(dtype=object)
    lengths = set(plans.str.len().unique().tolist())
    if len(lengths) > 1:
        raise ArtifactError(f"taustep: column {plans.name}: plans of lengths {sorted(lengths)}; expected one length (tau_max)")
    tau = lengths.pop() if lengths else 0
    flat = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)
    return (flat == ord("1")).reshape(len(strings), tau)


@dataclass(frozen=True)
class _TauSet:
    start: pd.DataFrame
    chemo: np.ndarray
    radio: np.ndarray
    group: np.ndarray  # per taustep row: index into start
    tau: np.ndarray  # per taustep row (1-based)


def _tau_set(taustep: pd.DataFrame) -> tuple[_TauSet, np.ndarray]:
    """The distinct (patient, start day, plan) branches of the tau-step set, and a row mask
    that keeps each branch once: a sliding single-dose sequence equal to the factual one is
    the same branch (and also flagged factual), so it would otherwise count twice."""
    group = taustep.groupby(["patient_id", "start_day", "sequence"], sort=False).ngroup().to_numpy()
    _, first = np.unique(group, return_index=True)
    heads = taustep.iloc[first]
    keep = ~heads.duplicated(["patient_id", "start_day", "chemo_plan", "radio_plan"]).to_numpy()
    chemo, radio = _plan_matrix(heads["chemo_plan"]), _plan_matrix(heads["radio_plan"])
    tau = taustep["tau"].to_numpy(np.int64)
    if chemo.shape != radio.shape or (len(tau) and tau.max() > chemo.shape[1]):
        raise ArtifactError(f"taustep: tau up to {tau.max()} but plans of {chemo.shape[1]} days; expected tau <= plan length")
    start = pd.DataFrame(
        {
            "patient_id": heads["patient_id"].to_numpy(),
            "patient_type": heads["patient_type"].to_numpy(),
            "day": heads["start_day"].to_numpy(np.int64),
            "volume_cm3": heads["volume_cm3"].to_numpy(np.float64),
            "chemo_concentration_prev": heads["chemo_concentration_prev"].to_numpy(np.float64),
        }
    )
    return _TauSet(start, chemo, radio, group, tau), keep[group]


# --------------------------------------------------------------------------- the driver
def evaluate(
    *,
    cfg: Config,
    gamma: float,
    cohort: pd.DataFrame,
    trajectories: pd.DataFrame,
    onestep: pd.DataFrame,
    taustep: pd.DataFrame,
    regimen_outcomes: pd.DataFrame,
    device: torch.device,
) -> pd.DataFrame:
    """Score the built-in and configured models on one confounding strength.

    Args:
        cfg: the run configuration (``evaluate.*``, regimens, seed, split).
        gamma: the confounding strength the factual data and test sets were simulated under.
        cohort: Cohort table of every patient (test patients and training patients).
        trajectories: factual Trajectory rows under ``gamma``; only non-test patients are used.
        onestep, taustep: the OneStep and TauStep sets of the test patients under ``gamma``.
        regimen_outcomes: RegimenOutcome rows covering the test patients.
        device: torch device for model training and the oracle's simulation.

    Returns:
        A :class:`oncobench.schemas.Metric` table (module docstring lists the rows).

    Raises:
        ModelError: a model failed (one line naming it).
        ConfigError, ArtifactError: the inputs do not fit the configuration.
    """
    ev = cfg.evaluate
    ids = cohort["patient_id"].to_numpy(np.int64)
    test = is_test_patient(cfg.seed, torch.as_tensor(ids), cfg.counterfactuals.test_fraction).cpu().numpy()
    if not test.any():
        raise ArtifactError("cohort: no test patients; raise counterfactuals.test_fraction or cohort.n_patients")
    test_cohort = cohort[test].sort_values("patient_id", kind="stable").reset_index(drop=True)
    train_cohort = cohort[~test].sort_values("patient_id", kind="stable").reset_index(drop=True)
    universe = test_cohort["patient_id"].to_numpy(np.int64)
    regimen_names = [r.name for r in cfg.counterfactuals.regimens]
    days = cfg.simulation.days

    utilities = regimen_utilities(
        regimen_outcomes, regimens=regimen_names, patient_ids=universe, horizon_days=ev.horizon_days,
        cost_per_chemo_dose_cm3=ev.cost_per_chemo_dose_cm3, cost_per_radio_fraction_cm3=ev.cost_per_radio_fraction_cm3,
    )
    plans = {}
    for r in cfg.counterfactuals.regimens:
        chemo, radio = regimen_plan(r, days)
        plans[r.name] = RegimenPlan(chemo.numpy(), radio.numpy())
    context = ModelContext(
        train=trajectories[trajectories["patient_id"].isin(train_cohort["patient_id"])].reset_index(drop=True),
        cohort=train_cohort.loc[:, list(COVARIATE_COLUMNS)],
        regimens=plans,
        days=days,
        seed=cfg.seed,
        horizon_days=ev.horizon_days,
        cost_per_chemo_dose_cm3=ev.cost_per_chemo_dose_cm3,
        cost_per_radio_fraction_cm3=ev.cost_per_radio_fraction_cm3,
        device=device,
    )
    # plug-ins first: an import or factory error should surface before any training
    plugins = {spec.name: load_plugin(spec, i, context) for i, spec in enumerate(ev.models)}
    fm = ev.factual_model
    models = builtin_models(
        context=context, test_cohort=test_cohort, utilities=utilities, compat=cfg.simulation.compat,
        epochs=fm.epochs, hidden_units=fm.hidden_units, max_train_rows=fm.max_train_rows,
    )
    models.update(plugins)

    stats = _Stats(universe)
    defs: list[_MetricDef] = []
    predictors = [m for m in models.values() if m.can_predict]

    # one-step
    pos1 = stats.position(onestep["patient_id"].to_numpy(np.int64), "onestep")
    fact1 = onestep["is_factual"].to_numpy(bool)
    truth1 = onestep["volume_next_cm3"].to_numpy(np.float64)
    start1 = onestep.loc[:, list(START_COLUMNS)]
    c1 = onestep["chemo"].to_numpy(bool)[:, None]
    r1 = onestep["radio"].to_numpy(bool)[:, None]
    for m in predictors:
        sq = (_predict(m, start1, c1, r1)[:, 0] - truth1) ** 2
        _add_split(stats, defs, m.name, "one_step", "nrmse", pos1, sq, fact1)

    # tau-step
    ts, once = _tau_set(taustep)
    pos_t = stats.position(taustep["patient_id"].to_numpy(np.int64), "taustep")
    fact_t = taustep["is_factual"].to_numpy(bool)
    truth_t = taustep["volume_tau_cm3"].to_numpy(np.float64)
    taus = sorted(np.unique(ts.tau).tolist())
    for m in predictors:
        pred = _predict(m, ts.start, ts.chemo, ts.radio)[ts.group, ts.tau - 1]
        sq = (pred - truth_t) ** 2
        for k in taus:
            sel = (ts.tau == k) & once
            _add_split(stats, defs, m.name, "tau_step", f"nrmse_tau{k}", pos_t[sel], sq[sel], fact_t[sel])

    # recommend
    u = utilities.to_numpy()
    best = u.max(axis=1)
    patients = test_cohort.loc[:, list(COVARIATE_COLUMNS)]
    ones = np.ones(len(universe))
    for m in models.values():
        chosen_u = u[np.arange(len(universe)), m.recommend(patients, regimen_names)]
        for metric, per_patient in (
            ("policy_value", chosen_u),
            ("regret", best - chosen_u),
            ("oracle_agreement", (chosen_u == best).astype(np.float64)),
        ):
            key = (m.name, "recommend", metric)
            stats.add(key, per_patient, ones)
            defs.append(_MetricDef(m.name, "recommend", metric, "mean", (key,)))

    out = _bootstrap_table(
        stats, defs, test_cohort["difficulty_tier"].to_numpy(np.int64), replicates=ev.bootstrap, seed=cfg.seed, gamma=gamma
    )
    return out


def _add_split(
    stats: _Stats, defs: list[_MetricDef], model: str, task: str, metric: str, pos: np.ndarray, sq: np.ndarray, factual: np.ndarray
) -> None:
    """nRMSE on factual and counterfactual rows, and their gap on patients having both."""
    keys = {}
    for flag, suffix in ((True, "factual"), (False, "counterfactual")):
        key = (model, f"{task}_{suffix}", metric)
        stats.add_rows(key, pos[factual == flag], sq[factual == flag])
        defs.append(_MetricDef(model, f"{task}_{suffix}", metric, "nrmse", (key,)))
        keys[suffix] = key
    both = (stats.den[stats.keys[keys["factual"]]] > 0) & (stats.den[stats.keys[keys["counterfactual"]]] > 0)
    paired = []
    for suffix in ("counterfactual", "factual"):
        i = stats.keys[keys[suffix]]
        key = (model, task, metric, "paired", suffix)
        stats.add(key, stats.num[i] * both, stats.den[i] * both)
        paired.append(key)
    gap_metric = metric.replace("nrmse", "nrmse_gap", 1)
    defs.append(_MetricDef(model, task, gap_metric, "gap", tuple(paired)))


__all__ = ["CI_LEVEL", "NRMSE_NORMALISER_CM3", "evaluate", "nrmse", "regimen_utilities"]
