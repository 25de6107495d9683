"""Virtual-trial specs and their statistical analysis, checked against lifelines and by hand."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.statistics import logrank_test

from oncobench.config import ConfigError
from oncobench.trials import analysis as A
from oncobench.trials.spec import (
    COHORT_COLUMNS, DAYS_PER_MONTH, REGIMENS, eligible, load_spec, load_specs, scan_days, shipped_specs,
    TrialSpec, spec_from_mapping,
)

# --------------------------------------------------------------------------------------------
# Estimators against lifelines


def _datasets():
    w = load_waltons()
    r = load_rossi()
    return {
        "waltons": (w["T"].to_numpy(float), w["E"].to_numpy(bool), (w["group"] == "miR-137").to_numpy()),
        "rossi": (r["week"].to_numpy(float), r["arrest"].to_numpy(bool), r["fin"].to_numpy().astype(bool)),
    }


@pytest.mark.parametrize("name", ["waltons", "rossi"])
def test_km_median_matches_lifelines(name):
    t, e, g = _datasets()[name]
    km = KaplanMeierFitter()
    for mask in (g, ~g, np.ones_like(g)):
        km.fit(t[mask], e[mask])
        expected = float(km.median_survival_time_)
        got = A.km_median(t[mask], e[mask])
        if math.isinf(expected):
            assert math.isnan(got)  # rossi: fewer than half are re-arrested
        else:
            assert got == expected


@pytest.mark.parametrize("name", ["waltons", "rossi"])
def test_cox_and_logrank_match_lifelines(name):
    t, e, g = _datasets()[name]
    cph = CoxPHFitter().fit(pd.DataFrame({"T": t, "E": e, "x": g.astype(float)}), "T", "E")
    log_hr, se = A.cox_binary(t, e, g)
    assert log_hr == pytest.approx(cph.params_["x"], rel=1e-6, abs=1e-8)
    assert se == pytest.approx(cph.standard_errors_["x"], rel=1e-6)
    ci = np.exp(cph.confidence_intervals_.loc["x"].to_numpy())
    assert math.exp(log_hr - A.Z_95 * se) == pytest.approx(ci[0], rel=1e-6)
    assert math.exp(log_hr + A.Z_95 * se) == pytest.approx(ci[1], rel=1e-6)
    lr = logrank_test(t[g], t[~g], e[g], e[~g])
    chi2, p = A.logrank(t, e, g)
    assert chi2 == pytest.approx(lr.test_statistic, rel=1e-10)
    assert p == pytest.approx(lr.p_value, rel=1e-8)


def _trial_frame(seed: int, *, replicates: int = 3, n: int = 400, hr: float = 0.6, ties: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = replicates * n
    arm = np.tile(np.where(np.arange(n) % 2 == 0, "exp", "ctl"), replicates)
    rate = np.where(arm == "exp", hr, 1.0) / 180.0
    pfs = rng.exponential(1.0 / rate)
    os_ = pfs + rng.exponential(240.0, size)
    if ties:  # whole weeks, as from scan-based assessment
        pfs = np.ceil(pfs / 7.0) * 7.0
    return pd.DataFrame({
        "replicate": np.repeat(np.arange(replicates), n),
        "arm": arm,
        "patient_id": np.arange(size, dtype=np.int64),
        "enrol_day": rng.uniform(0.0, 365.0, size),
        "pfs_days": pfs,
        "pfs_event": np.ones(size, dtype=bool),
        "os_days": os_,
        "os_event": np.ones(size, dtype=bool),
        "best_response": rng.choice(["CR", "PR", "SD", "PD", "NE"], size),
        "grade3_ae": rng.random(size) < 0.3,
    })


def test_analyse_replicate_numpy_equals_lifelines_engine(seed):
    df = A.apply_cutoff(_trial_frame(seed, replicates=1, ties=True), 600.0)
    fast = A.analyse_replicate(df, experimental="exp", control="ctl")
    ref = A.analyse_replicate(df, experimental="exp", control="ctl", engine="lifelines")
    assert fast.keys() == ref.keys()
    for key, value in ref.items():
        assert fast[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key
    exp_rows = df[df["arm"] == "exp"]
    assert fast["orr_experimental"] == pytest.approx(exp_rows["best_response"].isin(["CR", "PR"]).mean())
    assert fast["grade3_ae_experimental"] == pytest.approx(exp_rows["grade3_ae"].mean())
    assert fast["n_experimental"] == len(exp_rows)
    assert fast["pfs_events"] == df["pfs_event"].sum()


def test_cox_recovers_known_hazard_ratio(seed):
    """Independent check: exponential times with a known HR, random censoring."""
    rng = np.random.default_rng(seed)
    n, true_hr = 4000, 0.65
    g = rng.random(n) < 0.5
    t = rng.exponential(1.0 / np.where(g, true_hr * 0.01, 0.01))
    c = rng.uniform(0.0, 250.0, n)
    time, event = np.minimum(t, c), t <= c
    log_hr, se = A.cox_binary(time, event, g)
    assert abs(log_hr - math.log(true_hr)) < 4.0 * se
    assert se < 0.05  # the check has power: 4 SE is under 0.2 on the log scale
    _, p = A.logrank(time, event, g)
    assert p < 1e-6


def test_km_median_of_exponential_is_log2_over_rate(seed):
    rng = np.random.default_rng(seed)
    t = rng.exponential(100.0, 20000)
    assert A.km_median(t, np.ones_like(t, dtype=bool)) == pytest.approx(100.0 * math.log(2.0), rel=0.03)


# --------------------------------------------------------------------------------------------
# Cut-off


def test_apply_cutoff_cases():
    df = pd.DataFrame({
        "replicate": [0, 0, 0, 0, 0],
        "arm": ["a", "a", "b", "b", "b"],
        "patient_id": [1, 2, 3, 4, 5],
        "enrol_day": [0.0, 100.0, 200.0, 300.0, 400.0],
        "pfs_days": [50.0, 250.0, 100.0, 20.0, 10.0],
        "pfs_event": [True, True, True, False, True],
        "os_days": [400.0, 150.0, 100.0, 30.0, 10.0],
        "os_event": [True, False, True, True, True],
        "best_response": ["PR", "SD", "PD", "CR", "PR"],
        "grade3_ae": [True, False, False, True, False],
    })
    out = A.apply_cutoff(df, 300.0).set_index("patient_id")
    assert list(out.index) == [1, 2, 3, 4]  # enrolled after the cut-off: dropped
    # 1: follow-up 300; PFS event at 50 kept; OS event at 400 > 300 -> censored at 300
    assert (out.loc[1, "pfs_days"], out.loc[1, "pfs_event"]) == (50.0, True)
    assert (out.loc[1, "os_days"], out.loc[1, "os_event"]) == (300.0, False)
    # 2: follow-up 200; PFS event at 250 -> censored at 200; OS censored at 150 stays
    assert (out.loc[2, "pfs_days"], out.loc[2, "pfs_event"]) == (200.0, False)
    assert (out.loc[2, "os_days"], out.loc[2, "os_event"]) == (150.0, False)
    # 3: event exactly at the end of follow-up (100) is kept
    assert (out.loc[3, "pfs_days"], out.loc[3, "pfs_event"]) == (100.0, True)
    # 4: enrolled on the cut-off day: zero follow-up, everything censored at 0
    assert (out.loc[4, "os_days"], out.loc[4, "os_event"]) == (0.0, False)
    assert out.loc[4, "best_response"] == "CR"
    pd.testing.assert_frame_equal(A.apply_cutoff(A.apply_cutoff(df, 300.0), 300.0), A.apply_cutoff(df, 300.0))
    # without dates the adverse-event flags are kept as they are
    assert list(out["grade3_ae"]) == [True, False, False, True]
    # with dates, an event after the follow-up is not yet known: 1 (day 280 of 300) is kept,
    # 4 (day 5, zero follow-up) is not; 2 and 3 had none
    dated = df.assign(grade3_ae_day=[280.0, np.nan, np.nan, 5.0, np.nan])
    cut = A.apply_cutoff(dated, 300.0).set_index("patient_id")
    assert list(cut["grade3_ae"]) == [True, False, False, False]
    assert cut.loc[1, "grade3_ae_day"] == 280.0 and cut["grade3_ae_day"].isna().sum() == 3
    pd.testing.assert_frame_equal(A.apply_cutoff(A.apply_cutoff(dated, 300.0), 300.0), A.apply_cutoff(dated, 300.0))
    assert df["os_days"].tolist()[0] == 400.0  # the input is not modified


# --------------------------------------------------------------------------------------------
# Specs


def _base_spec() -> dict:
    return {
        "name": "toy",
        "title": "Toy trial",
        "reference": "none",
        "population": {"region": "western", "stage": ["IV"]},
        "eligibility": "stage == 'IV' and ecog <= 1",
        "line": "first",
        "arms": [
            {"name": "exp", "regimen": "pembrolizumab", "ratio": 1},
            {"name": "ctl", "regimen": {"carboplatin_pemetrexed": 3, "cisplatin_pemetrexed": 1}, "ratio": 1, "control": True},
        ],
        "sample_size": 100,
        "accrual_months": 12,
        "data_cutoff_months": 24,
        "scans": [{"every_weeks": 6}],
        "endpoints": ["pfs", "os", "orr", "grade3_ae"],
    }


def _write(tmp_path: Path, raw: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cohort() -> pd.DataFrame:
    """Six hand-made patients with every contract column."""
    return pd.DataFrame({
        "patient_id": np.arange(6, dtype=np.int64),
        "age_years": [60.0, 70.0, 55.0, 65.0, 72.0, 48.0],
        "sex": ["male", "female", "female", "male", "female", "male"],
        "ecog": np.array([0, 1, 1, 2, 0, 1], dtype=np.int64),
        "stage": ["IV", "IV", "IV", "IV", "IIIB", "IV"],
        "histology": ["adenocarcinoma", "squamous", "adenocarcinoma", "adenocarcinoma", "adenocarcinoma", "adenocarcinoma"],
        "smoking": ["current", "former", "never", "former", "never", "never"],
        "height_cm": [175.0, 160.0, 162.0, 180.0, 158.0, 170.0],
        "weight_kg": [80.0, 60.0, 55.0, 85.0, 52.0, 70.0],
        "bsa_m2": [1.95, 1.62, 1.57, 2.05, 1.52, 1.82],
        "creatinine_clearance_ml_min": [90.0, 70.0, 95.0, 60.0, 80.0, 110.0],
        "egfr": ["wild_type", "wild_type", "l858r", "wild_type", "ex19del", "wild_type"],
        "alk": [False, False, False, False, False, True],
        "kras_g12c": [True, False, False, False, False, False],
        "pdl1_tps": [0.8, 0.6, 0.1, 0.9, 0.0, 0.02],
        "pdl1_group": [">=50%", ">=50%", "1-49%", ">=50%", "<1%", "1-49%"],
        "region": ["western", "western", "east_asian", "western", "east_asian", "western"],
    })


def test_cohort_fixture_has_contract_columns():
    assert list(_cohort().columns) == list(COHORT_COLUMNS)


def test_shipped_specs_load_and_select_patients():
    specs = shipped_specs()
    assert set(specs) == {"keynote024", "keynote189", "flaura", "alex", "keynote010", "keynote407", "pacific"}
    assert {n for n, s in specs.items() if s.calibration} == {"keynote024", "keynote189", "flaura", "alex"}
    cohort = _cohort()
    expected = {
        "keynote024": [True, True, False, False, False, False],
        "keynote189": [True, False, False, False, False, False],
        "flaura": [False, False, True, False, True, False],
        "alex": [False, False, False, False, False, True],
        "keynote010": [True, True, False, False, False, False],
        "keynote407": [False, True, False, False, False, False],
        "pacific": [False, False, False, False, True, False],
    }
    for name, spec in specs.items():
        mask = eligible(spec, cohort)
        assert mask.dtype == np.bool_ and mask.tolist() == expected[name], name
        assert spec.control_arm.name != spec.experimental_arm.name
        assert spec.published is not None and spec.published.pfs_hr is not None
        assert spec.horizon_days >= spec.accrual_days
        for arm in spec.arms:
            assert set(arm.regimen_weights) <= set(REGIMENS)
            assert sum(arm.regimen_weights.values()) == pytest.approx(1.0)
    assert specs["keynote024"].published.pfs_hr.estimate == 0.50
    assert specs["keynote024"].cutoff_months("os") > specs["keynote024"].cutoff_months("pfs")
    assert specs["keynote189"].arm_sizes() == {"pembrolizumab_chemotherapy": 411, "placebo_chemotherapy": 205}
    assert specs["flaura"].population.region_weights == pytest.approx({"east_asian": 0.62, "western": 0.38})
    assert specs["keynote010"].line.after_regimen == "carboplatin_pemetrexed"
    assert specs["keynote024"].crossover_from("chemotherapy") == {"pembrolizumab": 0.63}
    assert specs["keynote407"].arm_sizes() == {"pembrolizumab_chemotherapy": 280, "placebo_chemotherapy": 279}
    assert specs["pacific"].arm_sizes() == {"durvalumab": 475, "placebo": 238}
    assert specs["pacific"].line.at == "completion_without_progression"
    assert specs["pacific"].cutoff_months("os") > specs["pacific"].cutoff_months("pfs")


def test_load_spec_and_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, _base_spec()))
    assert spec.replicates == 200 and spec.dropout_per_year == 0.0 and spec.crossover == () and not spec.calibration
    assert spec.line.is_first and spec.population.region == "western"
    assert spec.arm("ctl").regimen_weights == {"carboplatin_pemetrexed": 0.75, "cisplatin_pemetrexed": 0.25}
    assert spec.cutoff_day("os") == pytest.approx(24 * DAYS_PER_MONTH)
    other = _base_spec() | {"name": "toy2"}
    assert set(load_specs([_write(tmp_path, _base_spec()), _write(tmp_path, other, "b.yaml")])) == {"toy", "toy2"}
    with pytest.raises(ConfigError, match="key 'name'"):
        load_specs([_write(tmp_path, _base_spec()), _write(tmp_path, _base_spec(), "c.yaml")])


def test_scan_days():
    specs = shipped_specs()
    weeks = scan_days(specs["keynote189"], 60 * 7) / 7
    assert weeks.tolist() == [6, 12, 21, 30, 39, 48, 60]  # three phases: q6 to 12, q9 to 48, then q12
    weeks = scan_days(specs["flaura"], 110 * 7) / 7
    assert weeks[:3].tolist() == [6, 12, 18] and weeks[-3:].tolist() == [78, 90, 102]
    raw = _base_spec() | {"scans": [{"first_week": 9, "every_weeks": 6, "until_week": 21}, {"every_weeks": 12}]}
    assert (scan_days(spec_from_mapping(raw), 50 * 7) / 7).tolist() == [9, 15, 21, 33, 45]


def _mutate(fn):
    raw = copy.deepcopy(_base_spec())
    fn(raw)
    return raw


BAD_SPECS = {
    "unknown top key": (lambda r: r.update(colour="red"), "key 'colour'"),
    "unknown arm key": (lambda r: r["arms"][0].update(dose=2), r"key 'arms\[0\].dose'"),
    "unknown regimen": (lambda r: r["arms"][0].update(regimen="pembro"), r"key 'arms\[0\].regimen'"),
    "unknown mixture regimen": (lambda r: r["arms"][1].update(regimen={"carbo_pem": 1}), r"key 'arms\[1\].regimen'"),
    "unknown column": (lambda r: r.update(eligibility="stage == 'IV' and tmb >= 10"), "key 'eligibility'.*tmb"),
    "unknown level": (lambda r: r.update(eligibility="egfr == 'wildtype'"), "key 'eligibility'.*wildtype"),
    "call in rule": (lambda r: r.update(eligibility="__import__('os').system('true')"), "key 'eligibility'"),
    "attribute in rule": (lambda r: r.update(eligibility="histology.size > 0"), "key 'eligibility': 'Attribute'"),
    "non-boolean rule": (lambda r: r.update(eligibility="ecog + 1"), "key 'eligibility'"),
    "two controls": (lambda r: r["arms"][0].update(control=True), "key 'arms'.*exactly one"),
    "no control": (lambda r: r["arms"][1].update(control=False), "key 'arms'.*exactly one"),
    "bad stage": (lambda r: r["population"].update(stage=["IIIB", "V"]), r"key 'population.stage\[1\]'"),
    "bad line": (lambda r: r.update(line={"after_regimen": "docetaxel", "at": "relapse"}), "key 'line.at'"),
    "crossover arm": (lambda r: r.update(crossover=[{"from_arm": "nope", "to_regimen": "pembrolizumab", "probability": 0.5}]),
                      r"key 'crossover\[0\].from_arm'"),
    "crossover probability": (lambda r: r.update(crossover=[{"from_arm": "ctl", "to_regimen": "pembrolizumab", "probability": 1.5}]),
                              r"key 'crossover\[0\].probability'"),
    "bad endpoint": (lambda r: r.update(endpoints=["pfs", "dfs"]), r"key 'endpoints\[1\]'"),
    "hr outside ci": (lambda r: r.update(published={"pfs_hr": {"estimate": 0.9, "lower": 0.4, "upper": 0.8}}), "key 'published.pfs_hr'"),
    "missing cut-off": (lambda r: r.update(data_cutoff_months={"pfs": 20}), "key 'data_cutoff_months'"),
    "missing key": (lambda r: r.pop("sample_size"), "key 'sample_size'"),
    "ratio not int": (lambda r: r["arms"][0].update(ratio=1.5), r"key 'arms\[0\].ratio'"),
    "scan phase without end": (lambda r: r.update(scans=[{"every_weeks": 6}, {"every_weeks": 9}]), r"key 'scans\[0\].until_week'"),
    "region and mix": (lambda r: r["population"].update(region_mix={"east_asian": 1.0}), "key 'population.region_mix'"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_specs_name_file_and_key(tmp_path, case):
    mutate, pattern = BAD_SPECS[case]
    path = _write(tmp_path, _mutate(mutate))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_eligible_rejects_cohort_without_the_column(tmp_path):
    spec = load_spec(_write(tmp_path, _base_spec()))
    with pytest.raises(ConfigError, match=r"spec.yaml' key 'eligibility'.*'ecog'"):
        eligible(spec, _cohort().drop(columns=["ecog"]))
    assert eligible(spec, _cohort()).tolist() == [True, True, True, False, False, True]


# --------------------------------------------------------------------------------------------
# Trial analysis and summary


def _toy_spec(**published) -> TrialSpec:
    raw = _base_spec()
    raw["published"] = published or None
    return spec_from_mapping(raw)


def test_analyse_trial_uses_each_endpoints_cutoff(seed):
    raw = _base_spec() | {"data_cutoff_months": {"pfs": 10, "os": 30, "orr": 10, "grade3_ae": 10}}
    spec = spec_from_mapping(raw)
    df = _trial_frame(seed)
    out = A.analyse_trial(df, spec)
    assert out["replicate"].tolist() == [0, 1, 2]
    one = df[df["replicate"] == 1]
    pfs = A.analyse_replicate(A.apply_cutoff(one, spec.cutoff_day("pfs")), experimental="exp", control="ctl")
    os_ = A.analyse_replicate(A.apply_cutoff(one, spec.cutoff_day("os")), experimental="exp", control="ctl")
    row = out.iloc[1]
    assert row["pfs_hr"] == pytest.approx(pfs["pfs_hr"]) and row["pfs_events"] == pfs["pfs_events"]
    assert row["os_hr"] == pytest.approx(os_["os_hr"]) and row["os_events"] == os_["os_events"]
    assert row["n_experimental"] == os_["n_experimental"]  # counts at the latest cut-off


def _per_replicate(**cols) -> pd.DataFrame:
    base = {
        "pfs_hr": [0.5, 0.6, 0.7, 0.8], "pfs_logrank_p": [0.001, 0.01, 0.2, 0.03],
        "pfs_median_months_experimental": [10.0, 11.0, 11.0, 12.0], "pfs_median_months_control": [6.0] * 4,
        "os_hr": [0.9] * 4, "os_logrank_p": [0.5] * 4,
        "os_median_months_experimental": [np.nan, np.nan, np.nan, 40.0], "os_median_months_control": [14.0] * 4,
        "orr_experimental": [0.50] * 4, "orr_control": [0.40] * 4,
        "grade3_ae_experimental": [0.30] * 4, "grade3_ae_control": [0.50] * 4,
    }
    base.update(cols)
    return pd.DataFrame(base)


def test_summarise_within_target_logic():
    spec = _toy_spec(
        pfs_hr={"estimate": 0.6, "lower": 0.5, "upper": 0.7},
        os_hr={"estimate": 0.6, "lower": 0.5, "upper": 0.7},
        pfs_median_months={"experimental": 10.0, "control": 5.0},
        os_median_months={"experimental": "not_reached", "control": 14.5},
        orr={"experimental": 0.45, "control": 0.25},
    )
    s = A.summarise(_per_replicate(), spec).set_index(["endpoint", "statistic"])
    hr = s.loc[("pfs", "hr")]
    assert hr["simulated_mean"] == pytest.approx(math.exp(np.log([0.5, 0.6, 0.7, 0.8]).mean()))
    assert bool(hr["within_target"]) and hr["power"] == 0.75  # p < 0.05 and HR < 1 in 3 of 4
    assert hr["published_lower"] == 0.5 and hr["published_upper"] == 0.7
    assert not bool(s.loc[("os", "hr"), "within_target"])  # 0.9 outside (0.5, 0.7)
    assert s.loc[("os", "hr"), "power"] == 0.0
    assert bool(s.loc[("pfs", "median_months_experimental"), "within_target"])  # 11 vs 10: 10%
    assert not bool(s.loc[("pfs", "median_months_control"), "within_target"])  # 6 vs 5: 20%
    assert bool(s.loc[("os", "median_months_experimental"), "within_target"])  # NR in 3 of 4, published NR
    assert s.loc[("os", "median_months_experimental"), "share_finite"] == 0.25
    assert bool(s.loc[("os", "median_months_control"), "within_target"])
    assert bool(s.loc[("orr", "experimental"), "within_target"])  # 5 points
    assert not bool(s.loc[("orr", "control"), "within_target"])  # 15 points
    assert s.loc[("grade3_ae", "experimental"), "within_target"] is pd.NA  # nothing published
    assert math.isnan(s.loc[("grade3_ae", "experimental"), "published"])
    assert s.loc[("orr", "experimental"), "simulated_lower"] == pytest.approx(0.5)


def test_summarise_without_published_values():
    s = A.summarise(_per_replicate(), _toy_spec())
    assert s["within_target"].isna().all() and s["published"].isna().all()
    assert len(s) == 10


def test_shipped_spec_end_to_end_is_fast(seed):
    """Analysis of 50 replicates x 600 patients (the per-replicate cost scales linearly)."""
    import time

    spec = shipped_specs()["keynote010"]
    df = _trial_frame(seed, replicates=50, n=600)
    df["arm"] = df["arm"].map({"exp": "pembrolizumab", "ctl": "docetaxel"})
    start = time.perf_counter()
    out = A.analyse_trial(df, spec)
    elapsed = time.perf_counter() - start
    assert len(out) == 50 and out["pfs_hr"].between(0.4, 0.9).all()
    assert elapsed < 10.0  # generous: about 0.05 s here; a guard against falling back to lifelines
    s = A.summarise(out, spec)
    assert set(s["endpoint"]) == {"pfs", "os", "orr", "grade3_ae"}


def test_km_figure_writes_png(tmp_path, seed):
    spec = _toy_spec(pfs_median_months={"experimental": 8.0, "control": 5.0},
                     os_median_months={"experimental": "not_reached", "control": 14.0})
    target = tmp_path / "figs" / "km.png"
    out = A.km_figure(_trial_frame(seed), spec, target)
    assert out == target and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    A.km_figure(_trial_frame(seed), spec, target, replicate=1)
    assert sorted(p.name for p in target.parent.iterdir()) == ["km.png"]  # no temporary files left
