"""NSCLC recommendation scoring: schema, oracle identities, paired gains, independent recounts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from oncobench import io, schemas
from oncobench.cohort import is_test_patient
from oncobench.config import ConfigError, ModelSpec, load_config
from oncobench.nsclc import evaluation as ev
from oncobench.nsclc import tables
from oncobench.nsclc.model import NsclcModel
from oncobench.predictors import ModelError

N_PATIENTS = 300
GAMMA = 4.0
TEST_FRACTION = 0.25
TARGETED = ModelSpec(name="targeted", import_path="plugins_for_tests:nsclc_targeted_first")


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    cfg = load_config(overrides={"nsclc": {"horizon_days": 200}})
    m = NsclcModel.from_config(cfg)
    pop, lat = m.draw(torch.arange(N_PATIENTS))
    cohort = tables.cohort_frame(pop, lat)
    factual = m.factual(pop, lat, GAMMA)[1]
    counterfactual = m.counterfactual(pop, lat)
    return {"cfg": cfg, "model": m, "cohort": cohort, "factual": factual, "counterfactual": counterfactual}


def _evaluate(data, *, counterfactual=None, **overrides) -> pd.DataFrame:
    kwargs = dict(
        gamma=GAMMA,
        utility="qalys",
        guideline="guideline",
        models=(TARGETED,),
        bootstrap=200,
        seed=data["cfg"].seed,
        test_fraction=TEST_FRACTION,
        device="cpu",
        library=data["model"].library,
    )
    kwargs.update(overrides)
    cf = data["counterfactual"] if counterfactual is None else counterfactual
    with threadpool_limits(1):
        return ev.evaluate_nsclc(data["cohort"], data["factual"], cf, **kwargs)


@pytest.fixture(scope="module")
def metrics(data) -> pd.DataFrame:
    return _evaluate(data)


def _est(metrics: pd.DataFrame, model: str, metric: str) -> float:
    row = metrics[(metrics["model"] == model) & (metrics["metric"] == metric)]
    assert len(row) == 1, (model, metric)
    return float(row["estimate"].iat[0])


def _test_ids(data) -> np.ndarray:
    ids = data["cohort"]["patient_id"].to_numpy(np.int64)
    return np.sort(ids[is_test_patient(data["cfg"].seed, torch.as_tensor(ids), TEST_FRACTION).numpy()])


def test_table_matches_the_metric_schema_and_lists_every_recommender(data, metrics):
    io.validate(metrics, schemas.Metric, "nsclc metrics")
    regimens = list(data["model"].first_line)
    expected = ["oracle", "guideline", "t_learner", *(f"always_{r}" for r in regimens), "targeted"]
    assert list(pd.unique(metrics["model"])) == expected
    assert len(metrics) == len(expected) * len(ev.METRICS)
    assert set(metrics["metric"]) == set(ev.METRICS)
    assert (metrics["task"] == "recommendation").all() and (metrics["tier"] == "all").all()
    assert (metrics["n"] == len(_test_ids(data))).all()


def test_oracle_has_zero_regret_full_agreement_and_the_best_utility(metrics):
    oracle = metrics[metrics["model"] == "oracle"].set_index("metric")
    for col in ("estimate", "ci_low", "ci_high"):
        assert oracle.at["regret", col] == 0.0
        assert oracle.at["oracle_agreement", col] == 1.0
    best = _est(metrics, "oracle", "mean_utility")
    for model in pd.unique(metrics["model"]):
        u = _est(metrics, model, "mean_utility")
        assert u <= best + 1e-12, model
        assert _est(metrics, model, "regret") == pytest.approx(best - u, abs=1e-12)


def test_guideline_gains_against_itself_are_exactly_zero(metrics):
    g = metrics[metrics["model"] == "guideline"].set_index("metric")
    for metric in ("qaly_gain_vs_guideline", "survival_benefit_days_vs_guideline", "toxicity_avoidance_vs_guideline"):
        assert (g.loc[metric, ["estimate", "ci_low", "ci_high"]] == 0.0).all(), metric
    # paired: a gain is the difference of the two recommenders' means
    for model in ("oracle", "t_learner", "always_carboplatin_pemetrexed"):
        assert _est(metrics, model, "qaly_gain_vs_guideline") == pytest.approx(
            _est(metrics, model, "mean_qalys") - _est(metrics, "guideline", "mean_qalys"), abs=1e-12
        )


def test_intervals_contain_the_estimate(metrics):
    assert metrics[["ci_low", "ci_high"]].notna().all().all()
    assert (metrics["ci_low"] <= metrics["estimate"] + 1e-12).all()
    assert (metrics["estimate"] <= metrics["ci_high"] + 1e-12).all()


def test_fixed_regimen_metrics_equal_plain_means_of_the_counterfactual_table(data, metrics):
    cf = data["counterfactual"]
    rows = cf[(cf["regimen"] == "carboplatin_pemetrexed") & cf["patient_id"].isin(_test_ids(data))]
    assert len(rows) == len(_test_ids(data))
    name = "always_carboplatin_pemetrexed"
    assert _est(metrics, name, "grade3_rate") == pytest.approx(rows["grade3_ae"].mean(), abs=1e-12)
    assert _est(metrics, name, "rmst_days") == pytest.approx(rows["os_days"].mean(), rel=1e-12)
    assert _est(metrics, name, "mean_cost_gbp") == pytest.approx(rows["cost_gbp"].mean(), rel=1e-12)


def test_oracle_recount_with_eligibility_written_out(data, metrics):
    # eligibility from the label indications: TKIs need their target, pemetrexed non-squamous
    cohort = data["cohort"].set_index("patient_id").loc[_test_ids(data)]
    cf = data["counterfactual"]
    u = cf.pivot(index="patient_id", columns="regimen", values="qalys").loc[cohort.index, list(data["model"].first_line)]
    ok = pd.DataFrame(True, index=u.index, columns=u.columns)
    for r in u.columns:
        if r in ("osimertinib", "gefitinib"):
            ok[r] = cohort["egfr"] != "wild_type"
        if r in ("alectinib", "crizotinib"):
            ok[r] = cohort["alk"]
        if "pemetrexed" in r:
            ok[r] = cohort["histology"] != "squamous"
    assert _est(metrics, "oracle", "mean_qalys") == pytest.approx(u.where(ok).max(axis=1).mean(), rel=1e-12)


def test_os_utility_is_the_restricted_mean_survival(data):
    out = _evaluate(data, utility="os_days", models=(), bootstrap=20)
    for model in ("oracle", "t_learner", "guideline"):
        assert _est(out, model, "mean_utility") == _est(out, model, "rmst_days")
    assert _est(out, "oracle", "regret") == 0.0


def test_same_seed_same_table(data, metrics):
    pd.testing.assert_frame_equal(_evaluate(data), metrics)


def test_t_learner_falls_back_to_the_training_mean_for_rare_regimens(data):
    train = data["factual"].merge(tables.observable(data["cohort"]), on="patient_id")
    got = ev.t_learner_utility(train, train.head(5), ["crizotinib"], utility="qalys", seed=1)
    assert (train["regimen"] == "crizotinib").sum() < ev.T_LEARNER_MIN_ROWS
    np.testing.assert_array_equal(got, np.full((5, 1), train["qalys"].mean()))


def test_missing_guideline_regimen_names_the_config_key(data):
    cf = data["counterfactual"]
    with pytest.raises(ConfigError, match=r"nsclc\.first_line_regimens.*'osimertinib'"):
        _evaluate(data, counterfactual=cf[cf["regimen"] != "osimertinib"], models=(), bootstrap=0)


def test_unknown_reference_recommender_names_the_config_key(data):
    with pytest.raises(ConfigError, match=r"nsclc\.evaluate\.guideline.*'nccn'"):
        _evaluate(data, guideline="nccn", models=(), bootstrap=0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("surgeon", "plugins_for_tests:unknown_regimen_model"), "model 'surgeon' recommend returned unknown regimen 'surgery'"),
        (ModelSpec("fragile", "plugins_for_tests:nsclc_raising_recommend"), "model 'fragile' recommend raised KeyError"),
        (ModelSpec("volumes", "plugins_for_tests:good_model"), "model 'volumes'"),
        (ModelSpec("unfit", "plugins_for_tests:raising_factory"), "model 'unfit' factory"),
    ],
)
def test_plugin_failures_are_one_line_model_errors(data, spec, message):
    with pytest.raises(ModelError) as info:
        _evaluate(data, models=(spec,), bootstrap=0)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
