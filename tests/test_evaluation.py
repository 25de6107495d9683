"""The evaluate stage: metrics, patient bootstrap, built-in models and the plug-in contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from oncobench import cohort as cohort_mod
from oncobench import counterfactuals, engine, io, schemas, trajectories
from oncobench.config import load_config
from oncobench.evaluation import NRMSE_NORMALISER_CM3, evaluate, nrmse, regimen_utilities
from oncobench.io import ArtifactError
from oncobench.models import geng2017 as g
from oncobench.predictors import CheckedModel, ModelContext, ModelError, RegimenPlan, predicted_utility

TESTS_DIR = str(Path(__file__).resolve().parent)
GAMMA = 4.0
GOOD = {"name": "loglinear", "import": "plugins_for_tests:good_model", "options": {"radio_kill": 0.2}}
RECOMMENDER = {"name": "big_radio", "import": "plugins_for_tests:big_tumours_get_radio", "options": {"threshold_cm3": 5.0}}
TINY = {
    "seed": 11,
    "cohort": {"n_patients": 160, "shards": 1},
    "simulation": {"days": 20},
    "counterfactuals": {"horizons_days": [5, 15], "tau_max": 3, "tau_start_every_days": 4, "test_fraction": 0.5},
    "evaluate": {
        "bootstrap": 60,
        "horizon_days": 15,
        "factual_model": {"epochs": 2, "hidden_units": 8, "max_train_rows": 1000},
    },
}


def tiny_config(models: list[dict] | None = None):
    overrides = {**TINY, "evaluate": {**TINY["evaluate"], "models": models or []}}
    return load_config(overrides=overrides)


@pytest.fixture(scope="module", autouse=True)
def plugin_path():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS_DIR)
        yield


@pytest.fixture(scope="module")
def inputs():
    """Cohort, factual trajectories, test sets and regimen outcomes of a tiny seeded run."""
    cfg = tiny_config()
    cpu = torch.device("cpu")
    drawn = cohort_mod.draw(cfg.seed, torch.arange(cfg.cohort.n_patients))
    test = cohort_mod.is_test_patient(cfg.seed, drawn.patient_id, cfg.counterfactuals.test_fraction)
    test_patients = drawn.take(torch.nonzero(test, as_tuple=True)[0])
    common = dict(seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat)
    cf = cfg.counterfactuals
    traj = pd.concat(
        trajectories.simulate_frames(
            drawn, gamma=GAMMA, window_days=cfg.policy.window_days,
            observation=engine.Observation(cfg.observation.scan_every_days, cfg.observation.diameter_cv),
            record_every=1, chunk_patients=10_000, device=cpu, **common,
        ),
        ignore_index=True,
    )
    return {
        "cohort": cohort_mod.to_frame(drawn),
        "trajectories": traj,
        "onestep": counterfactuals.one_step(test_patients, gamma=GAMMA, window_days=cfg.policy.window_days, **common),
        "taustep": counterfactuals.tau_step(
            test_patients, gamma=GAMMA, window_days=cfg.policy.window_days, tau_max=cf.tau_max,
            start_every_days=cf.tau_start_every_days, **common,
        ),
        "regimen_outcomes": counterfactuals.regimen_outcomes(
            drawn, cf.regimens, horizons=cf.horizons_days, replicates=2, **common
        ),
    }


def run(inputs, models: list[dict] | None = None) -> pd.DataFrame:
    return evaluate(cfg=tiny_config(models), gamma=GAMMA, device=torch.device("cpu"), **inputs)


@pytest.fixture(scope="module")
def metrics(inputs) -> pd.DataFrame:
    return run(inputs, [GOOD, RECOMMENDER])


def pick(df: pd.DataFrame, **eq) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        mask &= df[k].to_numpy() == v
    return df[mask]


# --------------------------------------------------------------------------- formulas
def test_nrmse_matches_hand_computation():
    # squared errors 0, 4, 9: pooled MSE 13/3
    got = nrmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 0.0]))
    assert got == pytest.approx(100.0 * np.sqrt(13.0 / 3.0) / 1150.35, rel=1e-5)
    assert NRMSE_NORMALISER_CM3 == pytest.approx(1150.35, abs=0.01)


def test_regimen_utility_averages_replicates_and_charges_fractions():
    ro = pd.DataFrame(
        {
            "patient_id": [7, 7, 7, 7],
            "regimen": ["a", "a", "b", "b"],
            "replicate": [0, 1, 0, 1],
            "horizon_day": [10, 10, 10, 10],
            "volume_cm3": [4.0, 6.0, 1.0, 1.0],
            "chemo_doses": [0, 0, 2, 2],
            "radio_dose_gy": [0.0, 0.0, 8.0, 4.0],
        }
    )
    u = regimen_utilities(ro, regimens=["a", "b"], patient_ids=np.array([7]), horizon_days=10,
                          cost_per_chemo_dose_cm3=2.0, cost_per_radio_fraction_cm3=0.5)
    assert u.loc[7, "a"] == pytest.approx(-5.0)
    assert u.loc[7, "b"] == pytest.approx(-1.0 - 2.0 * 2 - 0.5 * 3)  # 3 fractions on average


def test_predicted_utility_stops_charging_after_predicted_death():
    class DiesOnDay2:
        def predict_volume(self, start, chemo_plan, radio_plan):
            out = np.full(chemo_plan.shape, 10.0)
            out[:, 1:] = g.DEATH_VOLUME_CM3
            return out

    h = 6
    ctx = ModelContext(
        train=pd.DataFrame(), cohort=pd.DataFrame(), days=10, seed=0, horizon_days=h,
        regimens={"daily": RegimenPlan(np.ones(10, bool), np.zeros(10, bool))},
        cost_per_chemo_dose_cm3=1.0, cost_per_radio_fraction_cm3=0.0, device=torch.device("cpu"),
    )
    patients = pd.DataFrame({"patient_id": [0], "patient_type": [1], "initial_volume_cm3": [5.0]})
    u = predicted_utility(CheckedModel("dies", DiesOnDay2(), ctx), patients, ["daily"])
    # doses on days 0 and 1 only (dead on day 2), volume on day h is the death threshold
    assert u[0, 0] == pytest.approx(-g.DEATH_VOLUME_CM3 - 2.0)


# --------------------------------------------------------------------------- the table
def test_metric_table_is_schema_valid_and_complete(metrics, inputs):
    io.validate(metrics, schemas.Metric, "metrics")
    models = set(metrics["model"])
    assert {"oracle", "factual_mlp", "loglinear", "big_radio"} <= models
    assert {f"always_{r}" for r in ("no_treatment", "chemo", "radio", "chemo_radio")} <= models
    tiers = {"all"} | {str(t) for t in inputs["cohort"]["difficulty_tier"].unique()}
    assert set(metrics["tier"]) <= tiers and "all" in set(metrics["tier"])
    tau = pick(metrics, model="factual_mlp", task="tau_step_counterfactual", tier="all")
    assert sorted(tau["metric"]) == ["nrmse_tau1", "nrmse_tau2", "nrmse_tau3"]
    # recommend-only models get no volume metrics
    assert set(pick(metrics, model="big_radio")["task"]) == {"recommend"}
    assert set(pick(metrics, model="always_radio")["task"]) == {"recommend"}
    assert not metrics[["estimate", "ci_low", "ci_high"]].isna().any().any()


def test_only_test_patients_are_scored(metrics, inputs):
    cfg = tiny_config()
    ids = inputs["cohort"]["patient_id"].to_numpy()
    n_test = int(cohort_mod.is_test_patient(cfg.seed, torch.as_tensor(ids), cfg.counterfactuals.test_fraction).sum())
    assert set(pick(metrics, tier="all")["n"]) == {n_test}
    assert 0 < n_test < len(ids)


def test_oracle_is_exact(metrics):
    oracle = pick(metrics, model="oracle")
    volume = oracle[oracle["task"] != "recommend"]
    assert len(volume) > 0
    assert (volume[["estimate", "ci_low", "ci_high"]].to_numpy() == 0.0).all()
    assert (pick(oracle, metric="regret")["estimate"] == 0.0).all()
    assert (pick(oracle, metric="oracle_agreement")["estimate"] == 1.0).all()


def test_regret_is_never_negative(metrics):
    regret = pick(metrics, metric="regret")
    assert len(regret) >= 7
    assert (regret[["estimate", "ci_low", "ci_high"]].to_numpy() >= 0.0).all()
    value = pick(metrics, metric="policy_value", tier="all").set_index("model")["estimate"]
    assert (value <= value["oracle"] + 1e-12).all()


def test_bootstrap_interval_contains_estimate(metrics):
    est, lo, hi = (metrics[c].to_numpy() for c in ("estimate", "ci_low", "ci_high"))
    assert (lo <= est + 1e-12).all() and (est <= hi + 1e-12).all()
    fm = pick(metrics, model="factual_mlp", task="one_step_counterfactual", tier="all").iloc[0]
    assert fm.ci_low < fm.estimate < fm.ci_high


def test_gap_is_estimated_on_the_same_patients(metrics):
    for (model, tier), df in metrics[metrics["task"] == "one_step"].groupby(["model", "tier"]):
        f = pick(metrics, model=model, tier=tier, task="one_step_factual").iloc[0]
        c = pick(metrics, model=model, tier=tier, task="one_step_counterfactual").iloc[0]
        gap = df.iloc[0]
        assert gap.metric == "nrmse_gap"
        assert gap.n == f.n == c.n
        assert gap.estimate == pytest.approx(c.estimate - f.estimate, abs=1e-12)
    assert len(pick(metrics, model="factual_mlp", task="tau_step", metric="nrmse_gap_tau3")) >= 1


def test_plugin_score_matches_direct_computation(metrics, inputs):
    one = inputs["onestep"]
    v = one["volume_cm3"].to_numpy()
    kill = 0.1 * one["chemo"].to_numpy() + 0.2 * one["radio"].to_numpy()
    pred = np.clip(v * np.exp(0.001 - kill), 0.0, g.DEATH_VOLUME_CM3)
    truth = one["volume_next_cm3"].to_numpy()
    for flag, task in ((True, "one_step_factual"), (False, "one_step_counterfactual")):
        sel = one["is_factual"].to_numpy() == flag
        got = pick(metrics, model="loglinear", task=task, tier="all")["estimate"].iloc[0]
        assert got == pytest.approx(nrmse(pred[sel], truth[sel]), rel=1e-9)


def test_repeated_tau_branch_counts_once(metrics, inputs):
    ts = inputs["taustep"]
    copy = ts[ts["sequence"] == 0].assign(sequence=99)  # the factual plan again, as another sequence
    again = run({**inputs, "taustep": pd.concat([ts, copy], ignore_index=True)}, [GOOD, RECOMMENDER])
    pd.testing.assert_frame_equal(metrics, again)


def test_evaluate_is_deterministic(metrics, inputs):
    again = run(inputs, [GOOD, RECOMMENDER])
    pd.testing.assert_frame_equal(metrics, again)


# --------------------------------------------------------------------------- plug-in errors
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "ghost", "import": "no_such_module_xyz:make"}, "evaluate.models[0] 'ghost': cannot import 'no_such_module_xyz:make'"),
        ({"name": "ghost", "import": "plugins_for_tests:no_such_factory"}, "evaluate.models[0] 'ghost': cannot import"),
        ({"name": "unfit", "import": "plugins_for_tests:raising_factory"}, "model 'unfit' factory"),
        ({"name": "raiser", "import": "plugins_for_tests:raising_model"}, "model 'raiser' predict_volume raised ValueError: weights were never fitted"),
        ({"name": "flat", "import": "plugins_for_tests:wrong_shape_model"}, "model 'flat' predict_volume returned shape ("),
        ({"name": "nan", "import": "plugins_for_tests:nan_model"}, "model 'nan' predict_volume returned 1 non-finite"),
        ({"name": "surgeon", "import": "plugins_for_tests:unknown_regimen_model"}, "model 'surgeon' recommend returned unknown regimen 'surgery'"),
        ({"name": "empty", "import": "plugins_for_tests:no_methods_model"}, "model 'empty': object has neither predict_volume nor recommend"),
    ],
)
def test_plugin_errors_are_one_line_naming_the_model(inputs, spec, expected):
    with pytest.raises(ModelError) as info:
        run(inputs, [spec])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_wrong_shape_message_states_expected_shape(inputs):
    with pytest.raises(ModelError, match=r"returned shape \((\d+),\) for \1 rows x 1 days; expected \(\1, 1\)"):
        run(inputs, [{"name": "flat", "import": "plugins_for_tests:wrong_shape_model"}])


def test_training_patients_in_test_set_are_rejected(inputs):
    cfg = tiny_config()
    ids = inputs["cohort"]["patient_id"].to_numpy()
    test = cohort_mod.is_test_patient(cfg.seed, torch.as_tensor(ids), cfg.counterfactuals.test_fraction).numpy()
    train_id = int(ids[~test][0])
    bad = inputs["onestep"].copy()
    bad.loc[bad.index[0], "patient_id"] = train_id
    with pytest.raises(ArtifactError, match=f"onestep: patient {train_id} is not a test patient"):
        evaluate(cfg=cfg, gamma=GAMMA, device=torch.device("cpu"), **{**inputs, "onestep": bad})
