"""Scores first-line treatment recommenders for NSCLC against the counterfactual ground truth.

Every recommender picks one first-line regimen per test patient among the regimens of the
counterfactual table (``nsclc.first_line_regimens``); its recommendations are scored with the
outcomes the simulator gives each patient under that regimen (the mean over the table's
replicates; common random numbers make differences between regimens treatment effects).

Recommenders (the ``model`` column):

* ``oracle``: the regimen of highest true utility among the clinically eligible ones
  (:func:`oncobench.nsclc.policies.eligible`), ties broken by regimen order. Its regimen
  defines ``regret`` and ``oracle_agreement``.
* ``guideline``: the biomarker-driven guideline regimen (:func:`policies.guideline_names`).
* ``t_learner``: one gradient-boosted regressor per regimen (scikit-learn
  ``HistGradientBoostingRegressor``) fitted on the factual training rows given that regimen,
  from the observable covariates of :data:`FEATURES`; a regimen with fewer than
  :data:`T_LEARNER_MIN_ROWS` training rows is predicted by the mean utility of all training
  rows. It recommends the eligible regimen of highest predicted utility. The naive baseline:
  its training data are confounded by the historical policy.
* ``always_<regimen>``: every patient gets the regimen, eligible or not (the metrics show the
  harm of ignoring eligibility).
* plug-ins (config ``evaluate.models``): ``factory(options, context)`` with an
  :class:`NsclcContext`; the returned object's ``recommend(patients, regimens)`` gets the test
  patients' observable covariates (``population.COLUMNS``) and the regimen names and returns one
  regimen name per patient, in row order. Every failure becomes one :class:`ModelError` line
  naming the model.

Metrics (task ``recommendation``, tier ``all``; all on the test split), each the mean over test
patients of a per-patient value, with a 95% percentile interval over ``bootstrap`` resamples of
the test patients (one set of resamples for every recommender and metric, a function of the
seed only, so differences between recommenders and between confounding strengths are paired):

* ``mean_utility``: the utility recommenders maximise (``qalys``, or ``os_days``, which is
  the restricted mean survival time because OS is censored at ``nsclc.horizon_days``);
* ``mean_qalys`` (discounted QALYs), ``rmst_days`` (restricted mean OS to the horizon, days),
  ``grade3_rate`` (share with any grade >= 3 adverse event), ``mean_cost_gbp``;
* against the reference recommender (``nsclc.evaluate.guideline``, by default ``guideline``):
  ``qaly_gain_vs_guideline`` (QALYs), ``survival_benefit_days_vs_guideline`` (RMST
  difference, days), ``toxicity_avoidance_vs_guideline`` (reference grade >= 3 rate minus this
  recommender's; positive = fewer adverse events);
* against the oracle: ``regret`` (oracle utility minus this recommender's, in utility units; it
  can be negative for a patient given an ineligible regimen that happens to do better), and
  ``oracle_agreement`` (share of patients given an eligible regimen of the oracle's utility).
  Ties count as agreement, as in :mod:`oncobench.evaluation`: exact ties are common (common
  random numbers; e.g. an immunotherapy non-responder gets the same outcome from chemotherapy
  with or without pembrolizumab), so which of the tied regimens the oracle names is arbitrary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from oncobench.cohort import is_test_patient
from oncobench.config import ConfigError, ModelSpec
from oncobench.io import ArtifactError
from oncobench.nsclc import policies, tables
from oncobench.nsclc import population as popmod
from oncobench.nsclc.regimens import RegimenLibrary, load_library
from oncobench.predictors import ModelError, _one_line, load_factory, recommendation_indices

UTILITIES = ("qalys", "os_days")
TASK = "recommendation"
TIER = "all"
CI_LEVEL = 0.95
BUILTIN_NAMES = ("oracle", "guideline", "t_learner")
# Observable covariates the t-learner uses; categoricals are coded by their fixed category order.
FEATURES = (
    "age_years",
    "sex",
    "ecog",
    "stage",
    "histology",
    "smoking",
    "bsa_m2",
    "creatinine_clearance_ml_min",
    "egfr",
    "alk",
    "kras_g12c",
    "pdl1_tps",
)
_CATEGORICAL = {
    "sex": popmod.SEXES,
    "stage": popmod.STAGES,
    "histology": popmod.HISTOLOGIES,
    "smoking": popmod.SMOKING,
    "egfr": popmod.EGFR,
}
# A regimen given to fewer factual training patients than this gets no model of its own.
T_LEARNER_MIN_ROWS = 20
# Cells of the bootstrap count matrix (resamples x patients) held at once.
_BOOTSTRAP_CELLS = 4_000_000
METRICS = (
    "mean_utility",
    "mean_qalys",
    "rmst_days",
    "grade3_rate",
    "mean_cost_gbp",
    "qaly_gain_vs_guideline",
    "survival_benefit_days_vs_guideline",
    "toxicity_avoidance_vs_guideline",
    "regret",
    "oracle_agreement",
)
# oncobench.schemas.Metric (strict): it has no split column; every row here is of the test split.
METRIC_COLUMNS = ("model", "task", "gamma", "tier", "metric", "estimate", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class NsclcContext:
    """What an NSCLC plug-in factory may use (never a test patient, never a latent column).

    Attributes:
        train: factual outcome rows of the training patients merged with their observable
            covariates (one row per patient: ``regimen`` is the historical first-line choice,
            outcomes as in the outcome table).
        cohort: observable covariates of the training patients (``population.COLUMNS``).
        regimens: the regimen names a recommendation must be one of, in table order.
        horizon_days: follow-up of the outcomes (times are censored there).
        seed: the run's seed.
        device: torch device to train on.
        utility: the outcome column scored as utility (``qalys`` or ``os_days``).
    """

    train: pd.DataFrame
    cohort: pd.DataFrame
    regimens: tuple[str, ...]
    horizon_days: int
    seed: int
    device: torch.device
    utility: str = "qalys"

    def __post_init__(self) -> None:
        if self.utility not in UTILITIES:
            raise ConfigError(f"config key 'nsclc.evaluate.utility': {self.utility!r}; expected one of {list(UTILITIES)}")
        if not self.regimens:
            raise ConfigError("config key 'nsclc.first_line_regimens': no regimens; expected at least one")


# --------------------------------------------------------------------------- plug-ins
class CheckedRecommender:
    """A plug-in behind the recommend contract's checks: every failure is one :class:`ModelError`.

    Args:
        name: the model's name in the metric table.
        model: the object the factory returned; it must have ``recommend``.
    """

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        if not callable(getattr(model, "recommend", None)):
            raise ModelError(
                f"model '{name}': {type(model).__name__} has no recommend(patients, regimens); "
                "expected one for NSCLC (see oncobench.nsclc.evaluation)"
            )

    def recommend(self, patients: pd.DataFrame, regimens: Sequence[str]) -> np.ndarray:
        """Index into ``regimens`` of the regimen chosen for each patient (int64, (n,))."""
        regimens = list(regimens)
        patients = patients.loc[:, list(popmod.COLUMNS)].reset_index(drop=True)
        try:
            out = self.model.recommend(patients.copy(), list(regimens))
        except Exception as exc:  # noqa: BLE001 - any plug-in failure is reported in one line
            raise ModelError(f"model '{self.name}' recommend raised {_one_line(exc)}") from exc
        return recommendation_indices(self.name, out, patients, regimens)


def load_recommender(spec: ModelSpec, index: int, context: NsclcContext) -> CheckedRecommender:
    """Import, build and wrap the plug-in ``spec`` (entry ``index`` of ``evaluate.models``)."""
    factory = load_factory(spec, index)
    try:
        model = factory(dict(spec.options), context)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model '{spec.name}' factory {spec.import_path!r} raised {_one_line(exc)}") from exc
    return CheckedRecommender(spec.name, model)


# --------------------------------------------------------------------------- t-learner
def feature_matrix(covariates: pd.DataFrame) -> np.ndarray:
    """(rows, len(FEATURES)) float64: numbers as they are, categoricals as their category code.

    Raises:
        ArtifactError: a categorical value outside the contract's categories.
    """
    cols = []
    for c in FEATURES:
        values = covariates[c]
        if c in _CATEGORICAL:
            cats = _CATEGORICAL[c]
            code = pd.Categorical(values.astype(str), categories=list(cats)).codes
            if (code < 0).any():
                bad = values.to_numpy()[code < 0][0]
                raise ArtifactError(f"cohort: column {c!r} has value {bad!r}; expected one of {list(cats)}")
            cols.append(code.astype(np.float64))
        else:
            cols.append(values.to_numpy(np.float64))
    return np.stack(cols, axis=1)


def _categorical_mask() -> np.ndarray:
    return np.array([c in _CATEGORICAL for c in FEATURES])


def t_learner_utility(train: pd.DataFrame, test: pd.DataFrame, regimens: Sequence[str], *, utility: str, seed: int) -> np.ndarray:
    """Predicted utility (test rows, regimens) of one regressor per regimen (module docstring).

    Args:
        train: factual training rows with ``regimen``, the ``utility`` column and :data:`FEATURES`.
        test: the rows to predict for, with :data:`FEATURES`.
        regimens: the regimens to predict, in column order.
        utility: outcome column to learn.
        seed: seeds each regressor (``random_state``).
    """
    x_train = feature_matrix(train)
    y = train[utility].to_numpy(np.float64)
    given = train["regimen"].astype(str).to_numpy()
    x_test = feature_matrix(test)
    fallback = float(y.mean()) if len(y) else 0.0
    out = np.full((len(test), len(regimens)), fallback)
    for j, r in enumerate(regimens):
        rows = given == r
        if rows.sum() < T_LEARNER_MIN_ROWS:
            continue
        reg = HistGradientBoostingRegressor(categorical_features=_categorical_mask(), random_state=seed + j)
        reg.fit(x_train[rows], y[rows])
        out[:, j] = reg.predict(x_test)
    return out


def _masked_argmax(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Column of the largest value among allowed columns (first on ties); all columns where a
    row allows none."""
    allowed = allowed | ~allowed.any(axis=1, keepdims=True)
    return np.where(allowed, values, -np.inf).argmax(axis=1)


# --------------------------------------------------------------------------- truth tables
def _truth(counterfactual: pd.DataFrame, patient_ids: np.ndarray, regimens: list[str]) -> dict[str, np.ndarray]:
    """Per (test patient, regimen) mean over replicates of qalys, os_days, grade3_ae, cost_gbp."""
    cols = ["qalys", "os_days", "grade3_ae", "cost_gbp"]
    missing = [c for c in ["patient_id", "regimen", *cols] if c not in counterfactual.columns]
    if missing:
        raise ArtifactError(f"counterfactual outcomes: missing column {missing[0]!r}; expected the outcome table's columns")
    cf = counterfactual.loc[:, ["patient_id", "regimen", *cols]].copy()
    cf["regimen"] = cf["regimen"].astype(str)
    cf["grade3_ae"] = cf["grade3_ae"].astype(np.float64)
    mean = cf.groupby(["patient_id", "regimen"], sort=False)[cols].mean()
    out = {}
    for c in cols:
        table = mean[c].unstack("regimen").reindex(index=patient_ids, columns=regimens)
        if table.isna().any().any():
            miss = table.isna()
            pid = miss.any(axis=1).idxmax()
            reg = miss.loc[pid].idxmax()
            raise ArtifactError(
                f"counterfactual outcomes: no finite {c} for test patient {pid} under regimen '{reg}' "
                f"({int(miss.to_numpy().sum())} patient x regimen cells missing); expected every test patient under every regimen"
            )
        out[c] = table.to_numpy(np.float64)
    return out


# --------------------------------------------------------------------------- bootstrap
def _bootstrap(values: np.ndarray, *, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of the columns of ``values`` (patients, K) and their percentile intervals.

    Every column uses the same patient resamples (paired); the resamples depend on the seed
    and the number of patients only.
    """
    n, k = values.shape
    estimate = values.mean(axis=0)
    if replicates == 0 or n == 0:
        return estimate, np.full(k, np.nan), np.full(k, np.nan)
    gen = np.random.default_rng(np.random.SeedSequence([seed, 0xB0075, 0x5C1C]))
    boot = np.empty((replicates, k))
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for lo in range(0, replicates, chunk):
        b = min(chunk, replicates - lo)
        draw = gen.integers(0, n, size=(b, n))
        counts = np.bincount((draw + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        # einsum's own loops, not BLAS: the same sums whatever the thread count
        boot[lo : lo + b] = np.einsum("bp,pk->bk", counts, values, optimize=False) / n
    alpha = (1.0 - CI_LEVEL) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return estimate, low, high


# --------------------------------------------------------------------------- the driver
def evaluate_nsclc(
    cohort: pd.DataFrame,
    factual: pd.DataFrame,
    counterfactual: pd.DataFrame,
    *,
    gamma: float,
    utility: str,
    guideline: str,
    models: tuple[ModelSpec, ...],
    bootstrap: int,
    seed: int,
    test_fraction: float,
    device: torch.device | str,
    horizon_days: int | None = None,
    library: RegimenLibrary | None = None,
) -> pd.DataFrame:
    """Score the built-in and configured recommenders on the test patients (module docstring).

    Args:
        cohort: cohort table of every patient (observable and ``latent_*`` columns).
        factual: factual outcome rows under the historical policy of strength ``gamma``; only
            those of training (non-test) patients are used.
        counterfactual: outcome rows per patient x regimen (x replicate), covering every test
            patient under every regimen; its regimens, in order of appearance, are the choices.
        gamma: the confounding strength the factual data were simulated under (a label).
        utility: ``qalys`` or ``os_days`` (config ``nsclc.evaluate.utility``).
        guideline: recommender the ``*_vs_guideline`` metrics compare against (config
            ``nsclc.evaluate.guideline``; a built-in or plug-in name).
        models: plug-in models (config ``evaluate.models``).
        bootstrap: patient resamples for the intervals (0: no intervals, NaN).
        seed: the run's seed (train/test split, t-learner, bootstrap).
        test_fraction: share of patients held out (``counterfactuals.test_fraction``).
        device: torch device handed to plug-ins.
        horizon_days: follow-up handed to plug-ins; None takes the largest ``os_days`` of the
            counterfactual table (times are censored at the horizon).
        library: regimen library for eligibility; None reads the shipped one.

    Returns:
        A :class:`oncobench.schemas.Metric` table: per recommender, the :data:`METRICS` rows.

    Raises:
        ConfigError: unknown ``utility`` or ``guideline``, a guideline regimen missing from
            the table, or a plug-in named like a built-in.
        ArtifactError: no test patients, or the tables do not cover them.
        ModelError: a plug-in failed (one line naming it).
    """
    if utility not in UTILITIES:
        raise ConfigError(f"config key 'nsclc.evaluate.utility': {utility!r}; expected one of {list(UTILITIES)}")
    device = torch.device(device)
    library = load_library(None) if library is None else library
    regimens = [str(r) for r in pd.unique(counterfactual["regimen"].astype(str))]
    unknown = [r for r in regimens if r not in library.names]
    if unknown:
        raise ArtifactError(f"counterfactual outcomes: regimen {unknown[0]!r} is not in the regimen library; expected one of {list(library.names)}")

    obs = tables.observable(cohort).sort_values("patient_id", kind="stable").reset_index(drop=True)
    ids = obs["patient_id"].to_numpy(np.int64)
    test = is_test_patient(seed, torch.as_tensor(ids), test_fraction).cpu().numpy()
    if not test.any():
        raise ArtifactError("cohort: no test patients; raise counterfactuals.test_fraction or the number of patients")
    test_obs = obs[test].reset_index(drop=True)
    train_obs = obs[~test].reset_index(drop=True)
    universe = test_obs["patient_id"].to_numpy(np.int64)
    n = len(universe)
    truth = _truth(counterfactual, universe, regimens)
    util = truth[utility]

    pop = popmod.from_frame(test_obs)
    allowed = policies.eligible(pop, library, tuple(regimens)).cpu().numpy()
    guide_names = policies.guideline_names(pop)
    missing = sorted(set(guide_names) - set(regimens))
    if missing:
        raise ConfigError(
            f"config key 'nsclc.first_line_regimens': guideline regimen {missing[0]!r} (for "
            f"{sum(g == missing[0] for g in guide_names)} test patient(s)) is not among {regimens}; expected it listed"
        )
    index = {r: i for i, r in enumerate(regimens)}

    fact = factual.loc[:, [c for c in factual.columns if c != "replicate"]].copy()
    fact["regimen"] = fact["regimen"].astype(str)
    train = fact.merge(train_obs, on="patient_id", how="inner", validate="many_to_one")
    if horizon_days is None:
        horizon_days = int(np.ceil(counterfactual["os_days"].max()))
    context = NsclcContext(
        train=train, cohort=train_obs, regimens=tuple(regimens), horizon_days=int(horizon_days), seed=seed, device=device, utility=utility
    )
    # plug-ins first: an import or factory error should surface before any training
    builtin = [*BUILTIN_NAMES, *(f"always_{r}" for r in regimens)]
    plugins = {}
    for i, spec in enumerate(models):
        if spec.name in builtin or spec.name in plugins:
            raise ConfigError(f"config key 'evaluate.models[{i}].name': {spec.name!r} is already a model name; expected a new name")
        plugins[spec.name] = load_recommender(spec, i, context)
    if guideline not in builtin and guideline not in plugins:
        raise ConfigError(f"config key 'nsclc.evaluate.guideline': {guideline!r} is not a model; expected one of {[*builtin, *plugins]}")

    choice: dict[str, np.ndarray] = {
        "oracle": _masked_argmax(util, allowed),
        "guideline": np.array([index[g] for g in guide_names], dtype=np.int64),
        "t_learner": _masked_argmax(t_learner_utility(train, test_obs, regimens, utility=utility, seed=seed), allowed),
    }
    for j, r in enumerate(regimens):
        choice[f"always_{r}"] = np.full(n, j, dtype=np.int64)
    for name, model in plugins.items():
        choice[name] = model.recommend(test_obs, regimens)

    rows_idx = np.arange(n)

    def pick(table: np.ndarray, name: str) -> np.ndarray:
        return table[rows_idx, choice[name]]

    ref_q, ref_os, ref_g3 = pick(truth["qalys"], guideline), pick(truth["os_days"], guideline), pick(truth["grade3_ae"], guideline)
    best = pick(util, "oracle")
    columns, labels = [], []
    for name in choice:
        u, q, os_days, g3 = pick(util, name), pick(truth["qalys"], name), pick(truth["os_days"], name), pick(truth["grade3_ae"], name)
        per_patient = (
            u,
            q,
            os_days,
            g3,
            pick(truth["cost_gbp"], name),
            q - ref_q,
            os_days - ref_os,
            ref_g3 - g3,
            best - u,
            ((u == best) & allowed[rows_idx, choice[name]]).astype(np.float64),
        )
        columns.extend(per_patient)
        labels.extend((name, metric) for metric in METRICS)
    estimate, low, high = _bootstrap(np.stack(columns, axis=1), replicates=bootstrap, seed=seed)
    out = pd.DataFrame(
        {
            "model": [m for m, _ in labels],
            "task": TASK,
            "gamma": float(gamma),
            "tier": TIER,
            "metric": [k for _, k in labels],
            "estimate": estimate,
            "ci_low": low,
            "ci_high": high,
            "n": np.int64(n),
        },
        columns=list(METRIC_COLUMNS),
    )
    return out.astype({"n": np.int64, "gamma": np.float64})


__all__ = [
    "FEATURES",
    "METRICS",
    "CheckedRecommender",
    "NsclcContext",
    "evaluate_nsclc",
    "feature_matrix",
    "load_recommender",
    "t_learner_utility",
]
