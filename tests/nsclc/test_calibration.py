"""Calibration: its pieces against independent answers, a fit that recovers a perturbed value,
and the shipped parameters against the four calibration trials."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oncobench.nsclc import calibration as cal
from oncobench.nsclc import params as pm
from oncobench.nsclc.regimens import load_library
from oncobench.trials import analysis, runner
from oncobench.trials.spec import shipped_specs

torch.set_num_threads(1)


def test_smooth_median_of_exponential_data():
    """Interpolated KM median of Exp(rate) data: ln2/rate within 4 SEs (SE of a median ~ 1/(2 f(m) sqrt(n)))."""
    rng = np.random.default_rng(3)
    n, rate = 4000, 0.01
    t = rng.exponential(1 / rate, n)
    m = cal.smooth_median(t, np.ones(n, bool))
    true = math.log(2) / rate
    se = 1 / (2 * rate * 0.5 * math.sqrt(n))
    assert abs(m - true) < 4 * se
    # it lies between the KM median and the previous event time
    km = analysis.km_median(t, np.ones(n, bool))
    assert km - 5 <= m <= km


def test_targets_and_residuals_follow_the_published_values():
    spec = shipped_specs()["keynote024"]
    targets = cal.published_targets(spec)
    value, se = targets["pfs_hr"]
    assert value == 0.50 and se == pytest.approx((math.log(0.68) - math.log(0.37)) / (2 * 1.959964), rel=1e-6)
    assert targets["orr.experimental"] == (0.448, cal.RATE_UNIT)
    assert cal.residual("pfs_hr", 0.50, 0.50, se) == 0.0
    assert cal.residual("pfs_median.control", 6.0 * 1.05, 6.0, cal.MEDIAN_UNIT) == pytest.approx(math.log(1.05) / 0.05)
    assert cal.residual("orr.control", float("nan"), 0.2, 0.03) == 10.0


def test_ties_follow_their_leader():
    p = cal.apply_values(pm.load_parameters(), {"drug_classes.anti_pd1.potency_per_day": 0.05})
    assert p.get("drug_classes.anti_pdl1.potency_per_day") == 0.05


@pytest.mark.parametrize("factor", [0.5, 2.0, 3.0])
def test_a_block_fit_recovers_a_perturbed_value(factor):
    """Perturb platinum's non-haematological AE hazard and refit it alone to KEYNOTE-024's
    chemotherapy arm: the fit must bring the arm's grade>=3 rate back near the published 53.3%.
    At x2 and x3 the first trust-region step lands on x = 0 (value x e^-1); with scipy's relative
    finite-difference step the Jacobian there was taken at a step of 1.5e-8, no patient changed,
    and the fit stopped on a zero gradient 2.7 and 1.8 units from the target."""
    params = pm.load_parameters()
    start = params.get("drug_classes.platinum.nonheme_grade3_per_day")
    perturbed = cal.apply_values(params, {"drug_classes.platinum.nonheme_grade3_per_day": factor * start})
    library = load_library()
    spec = shipped_specs()["keynote024"]
    cohorts = cal.build_cohorts([spec], library, seed=4, n_per_arm=300, device=torch.device("cpu"))
    c = cal.Calibration(params=perturbed, library=library, cohorts=cohorts, device=torch.device("cpu"), seed=4)
    block = cal.Block("platinum_toxicity", ("drug_classes.platinum.nonheme_grade3_per_day",), (r"keynote024\.grade3_ae\.control",))
    before, _, _ = c.residuals(perturbed, block.residuals, False)
    c.fit_block(block, max_nfev=8)
    after, _, _ = c.residuals(c.params, block.residuals, False)
    # the fit may stop anywhere within the arm's sampling error of the target: 2 binomial SEs at n = 300
    tol = 2 * math.sqrt(0.533 * 0.467 / 300) / cal.RATE_UNIT
    assert abs(after[0]) < tol < abs(before[0])


def test_a_trial_is_the_same_sample_in_every_block():
    """A trial's statistics do not depend on which other trials share the batch: blocks that see
    different trials (immunotherapy: the KEYNOTEs; survival: all four) fit the same sample."""
    params, library = pm.load_parameters(), load_library()
    specs = [shipped_specs()[n] for n in ("alex", "keynote024")]
    cohorts = cal.build_cohorts(specs, library, seed=4, n_per_arm=200, device=torch.device("cpu"))
    alone = cal.batch_statistics(cohorts[1:], params, library, with_os=False, device=torch.device("cpu"), seed=4)
    both = cal.batch_statistics(cohorts, params, library, with_os=False, device=torch.device("cpu"), seed=4)
    assert alone and all(k.startswith("keynote024.") for k in alone)
    assert {k: both[k] for k in alone} == alone


def test_fresh_cohort_check_scores_the_fit_on_another_seed():
    """The check's first column is the fit's own residual; the second is the same statistic on
    a cohort of another seed, which differs (a continuous median cannot repeat by chance) but
    stays within sampling error."""
    params, library = pm.load_parameters(), load_library()
    spec = shipped_specs()["keynote024"]
    cohorts = cal.build_cohorts([spec], library, seed=4, n_per_arm=300, device=torch.device("cpu"))
    c = cal.Calibration(params=params, library=library, cohorts=cohorts, device=torch.device("cpu"), seed=4)
    block = cal.Block("check", ("drug_classes.platinum.nonheme_grade3_per_day",),
                      (r"keynote024\.grade3_ae\.control", r"keynote024\.pfs_median\.control"))
    own, names, stats = c.residuals(params, block.residuals, False)
    lines = cal.fresh_cohort_check(c, [block], [spec], seed=5, n_per_arm=300)
    assert names == ["keynote024.pfs_median.control", "keynote024.grade3_ae.control"] and len(lines) == 4
    (fit_m, fresh_m), (fit_r, fresh_r) = ((float(v) for v in line.split(": ")[1].split(" -> ")) for line in lines[1:3])
    assert (fit_m, fit_r) == (pytest.approx(own[0], abs=0.005), pytest.approx(own[1], abs=0.005))
    assert fresh_m != fit_m
    # two independent binomial rates at n = 300 differ by less than 4 SEs of their difference
    p = stats["keynote024.grade3_ae.control"]
    assert abs(fresh_r - fit_r) * cal.RATE_UNIT < 4 * math.sqrt(2 * p * (1 - p) / 300)
    assert lines[3].startswith("check: cost")


CALIBRATION_REPORT = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "calibration.parquet"


@pytest.mark.slow
def test_shipped_calibration_reproduces_its_four_trials():
    """The shipped parameters against KEYNOTE-024, KEYNOTE-189, FLAURA and ALEX, 40 replicates each
    (seed 20171): the same table as docs/calibration.md, and its headline claims."""
    import pandas as pd

    from oncobench import io, schemas

    recorded = io.read_table(CALIBRATION_REPORT, schemas.TrialSummary)
    params, library = pm.load_parameters(), load_library()
    rows = []
    for name, spec in shipped_specs().items():
        if not spec.calibration:
            continue
        df = runner.run_trial(spec, params, library, seed=20171, replicates=40)
        s = analysis.summarise(analysis.analyse_trial(df, spec), spec)
        s.insert(0, "trial", name)
        rows.append(s)
    now = pd.concat(rows, ignore_index=True)
    key = ["trial", "endpoint", "statistic"]
    both = now.merge(recorded[recorded.calibration], on=key, suffixes=("", "_doc"))
    assert len(both) == len(now) == 40
    assert np.allclose(both.simulated_mean, both.simulated_mean_doc, rtol=1e-9, equal_nan=True)
    hits = now.within_target.dropna().astype(bool)
    assert int(hits.sum()) >= 37 and len(hits) == 38
    hr = now[now.statistic == "hr"]
    assert len(hr) == 8 and hr.within_target.astype(bool).all()  # every hazard ratio inside its published 95% CI


def test_earlier_default_differs_from_the_shipped_one_only_in_fitted_keys():
    """docs/nsclc_model_fit5.yaml (the default before the Norton-Simon model) is the shipped default
    with the Norton-Simon exponent off, no doomed volume after radiotherapy (an infinite clearance
    rate), no radiosensitive share (before its fit to RTOG 0617, nsclc.stage_iii) and the
    calibrated keys of fit 5: every other value must equal the shipped default's, except the next
    line after progression on chemoradiation (durvalumab consolidation then, chemo-immunotherapy
    now), which neither the release design nor a shipped trial reaches."""
    from oncobench.nsclc import regression, stage_iii
    from oncobench.tracking import flatten

    earlier = pm.load_parameters(CALIBRATION_REPORT.parent / "nsclc_model_fit5.yaml")
    default = pm.load_parameters()
    assert default.get("tumour.cytotoxic_kill_growth_exponent") == 1.0
    assert earlier.get("tumour.cytotoxic_kill_growth_exponent") == 0.0
    assert earlier.get("radiotherapy.doomed_clearance_per_day") == math.inf
    assert earlier.get("radiotherapy.radiosensitive_share") == 0.0
    fitted = set(pm.CALIBRATED_KEYS) | {stage_iii.KEY, regression.KEY, "tumour.cytotoxic_kill_growth_exponent"}
    fitted.add("pathway.next_regimen.chemoradiation")
    a, b = flatten(default.raw), flatten(earlier.raw)
    assert a.keys() == b.keys()
    differ = {k for k in a if a[k] != b[k]}
    assert differ <= fitted and "tumour.cytotoxic_kill_growth_exponent" in differ


def test_calibration_report_command_writes_the_report_the_table_and_its_own_command(tmp_path):
    """`oncobench calibration-report` (one replicate): a section per shipped trial, the fit log
    quoted, a regenerate line that repeats every option given, and a TrialSummary table whose
    calibration rows are the four calibration trials' endpoints."""
    from oncobench import io, schemas
    from oncobench.cli import main

    fit_log = tmp_path / "fit.log"
    fit_log.write_text("block chemotherapy: cost 2.00 -> 1.00\n")
    out, table = tmp_path / "report.md", tmp_path / "report.parquet"
    parameters = CALIBRATION_REPORT.parent / "nsclc_model_fit5.yaml"
    args = ["--parameters", str(parameters), "--replicates", "1", "--fit-log", str(fit_log), "--out", str(out), "--out-table", str(table)]
    assert main(["calibration-report", *args]) == 0
    text = out.read_text()
    assert f"`oncobench calibration-report {' '.join(args)}`" in text
    assert "block chemotherapy: cost 2.00 -> 1.00" in text
    specs = shipped_specs()
    assert all(f"## {name} (" in text for name in specs)
    summary = io.read_table(table, schemas.TrialSummary)
    assert set(summary.trial) == set(specs)
    assert set(summary[summary.calibration].trial) == {n for n, s in specs.items() if s.calibration}
    assert (summary.replicates == 1).all()
