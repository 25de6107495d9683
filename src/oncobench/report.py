"""The human summary of a workflow run: a Markdown page with headline numbers and figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from oncobench import __version__, cohort, counterfactuals, figures, io, schemas
from oncobench.config import Config, format_gamma

SAMPLE_PATIENTS = 12


def _table(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A GitHub Markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append("" if pd.isna(v) else floatfmt.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(row) -> str:
    if pd.isna(row.estimate):
        return ""
    return f"{row.estimate:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}]"


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


PARAMETER_COLUMNS = ["parameter", "identifiable_required", "contraction", "partial_contraction", "nrmse", "z_sd", "r2", "sbc_ks_p", "sbc_chi2_p", "dap_c2st"]
# Checks shown in the summary beside the per-parameter table (the rest: checks.parquet).
SUMMARY_CHECKS = ("hpd_coverage", "tarp", "realism_c2st", "treatment_inference", "latent_class")


def verification_section(cfg: Config, results: Path, here: Path) -> list[str]:
    """The summary's verification section: per branch the verdict, the per-parameter table,
    coverage, TARP, realism, treatment and latent-class recovery, gated causal checks, the
    negative controls and the figures; and any gate override."""
    from oncobench.inverse.gate import check_release

    md = ["## Verification\n"]
    md += check_release(cfg, results).lines()
    for g in cfg.gammas:
        d = results / "verification" / f"gamma-{format_gamma(g)}"
        verdict = io.read_table(d / "verdict.parquet", schemas.Verdict).iloc[0]
        checks = io.read_table(d / "checks.parquet", schemas.VerificationCheck)
        params = io.read_table(d / "parameters.parquet", schemas.VerificationParameter)
        controls = io.read_table(d / "controls.parquet", schemas.VerificationControl)
        md.append(f"### γ = {format_gamma(g)}: **{verdict.verdict.upper()}** ({verdict.n_failed} of {verdict.n_checks} gated checks failed)\n")
        if verdict.reasons:
            md.append(f"Reasons: {verdict.reasons}\n")
        md.append("Identifiability and SBC per latent parameter (held-out simulations):\n\n" + _table(params[PARAMETER_COLUMNS]) + "\n")
        shown = checks[checks.check.isin(SUMMARY_CHECKS) & (checks.passed.notna() | checks.metric.isin(["f1", "macro_f1", "permutation_p", "atc"]))]
        md.append(_table(shown) + "\n")
        causal = checks[~checks.check.isin(SUMMARY_CHECKS + ("identifiability", "sbc", "npe")) & checks.passed.notna()]
        md.append(f"Causal and analytic checks: {int(causal.passed.sum())} of {len(causal)} passed.\n\n" + _table(causal) + "\n")
        if len(controls):
            shown_controls = controls[["control", "kind", "expected", "outcome", "n_failed", "stages_run"]]
            md.append("Negative controls (each must fail):\n\n" + _table(shown_controls) + "\n")
        md.append(f"Every check, reported and gated: `{_rel(d / 'checks.parquet', here)}`.\n")
        for name, title in (("sbc_ranks", "SBC ranks"), ("coverage", "HPD coverage"), ("recovery", "Recovery"), ("realism", "Realism C2ST")):
            md.append(f"![{title}, gamma {format_gamma(g)}]({_rel(d / f'{name}.png', here)})\n")
    return md


def trajectory_sample(cfg: Config, cohort_df: pd.DataFrame, n: int = SAMPLE_PATIENTS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Daily volumes of the first ``n`` patients under every regimen (common random numbers)."""
    c = cohort.from_frame(cohort_df.head(n))
    course, reg_idx, _ = counterfactuals.simulate_regimens(
        c, cfg.counterfactuals.regimens, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat
    )
    vol = course.volume_cm3.numpy()
    idx = reg_idx.numpy()
    by_regimen = {r.name: vol[idx == i] for i, r in enumerate(cfg.counterfactuals.regimens)}
    return np.arange(cfg.simulation.days), by_regimen


def write_summary(cfg: Config, results_dir: str | Path, out: str | Path, out_figure: str | Path) -> None:
    """Write ``out`` (Markdown) and the trajectories-by-treatment figure ``out_figure``."""
    results = Path(results_dir)
    out = Path(out)
    here = out.parent
    shards = [results / "cohort" / f"shard-{k}.parquet" for k in range(cfg.cohort.shards)]
    cohort_df = pd.concat([io.read_table(p, schemas.Cohort) for p in shards], ignore_index=True)
    regimens = pd.concat(
        [io.read_table(results / "counterfactuals" / "regimens" / f"shard-{k}.parquet", schemas.RegimenOutcome) for k in range(cfg.cohort.shards)],
        ignore_index=True,
    )

    days, by_regimen = trajectory_sample(cfg, cohort_df)
    figures.save(figures.plot_trajectories_by_treatment(days, by_regimen), out_figure)

    md: list[str] = []
    md.append(f"# oncobench run summary ({cfg.tracking.release})\n")
    md.append(
        f"oncobench {__version__}, commit `{io.git_commit()[:12]}`, config hash `{cfg.hash()}`, seed {cfg.seed}. "
        f"Model `{cfg.model}` (compat `{cfg.simulation.compat}`), {cfg.cohort.n_patients} patients in "
        f"{cfg.cohort.shards} shards, {cfg.simulation.days} days, confounding strengths γ = "
        f"{', '.join(format_gamma(g) for g in cfg.gammas)}.\n"
    )

    md.append("## Cohort\n")
    stage = cohort_df.stage.value_counts(normalize=True).reindex(schemas.STAGES).fillna(0.0)
    md.append(_table(pd.DataFrame({"stage": stage.index, "share": stage.values})) + "\n")
    params = cohort_df[["initial_diameter_cm", "growth_rate_per_day", "radio_alpha_per_gy", "chemo_beta_c"]].describe().T
    params = params[["mean", "50%", "min", "max"]].reset_index().rename(columns={"index": "parameter", "50%": "median"})
    md.append(_table(params) + "\n")

    md.append("## Factual courses under the historical policy\n")
    rows = []
    for g in cfg.gammas:
        t = io.read_table(results / "trajectories" / f"gamma-{format_gamma(g)}" / "shard-0.parquet", schemas.Trajectory)
        last = t.groupby("patient_id").tail(1)
        rows.append(
            {
                "gamma": g,
                "chemo days (share)": t.loc[t.day > 0, "chemo_given"].mean(),
                "radio days (share)": t.loc[t.day > 0, "radio_given"].mean(),
                "died": (last.status == "dead").mean(),
                "recovered": (last.status == "recovered").mean(),
                "median final volume cm3": last.volume_cm3.median(),
            }
        )
    md.append("Shard 0 of each branch.\n\n" + _table(pd.DataFrame(rows)) + "\n")

    md.append("## Counterfactual outcomes by regimen\n")
    md.append(f"![Tumour volume by treatment]({_rel(Path(out_figure), here)})\n")
    rep0 = regimens[regimens.replicate == 0]
    med = rep0.pivot_table(index="regimen", columns="horizon_day", values="volume_cm3", aggfunc="median")
    med.columns = [f"median V day {c} (cm3)" for c in med.columns]
    final = rep0[rep0.horizon_day == rep0.horizon_day.max()].groupby("regimen")[["died", "recovered"]].mean()
    md.append(_table(med.join(final).reset_index()) + "\n")

    md += verification_section(cfg, results, here)

    md.append("## Model evaluation (all tiers, bootstrap 95% intervals)\n")
    for g in cfg.gammas:
        m = io.read_table(results / "metrics" / f"gamma-{format_gamma(g)}.parquet", schemas.Metric)
        m = m[m.tier == "all"].copy()
        m["value"] = [_ci(r) for r in m.itertuples()]
        md.append(f"### γ = {format_gamma(g)}\n")
        one = m[m.task.str.startswith("one_step")]
        if len(one):
            md.append("One-step normalised RMSE (100·√MSE / 1150.35), factual rows vs counterfactual rows:\n\n")
            md.append(_table(one.pivot_table(index="model", columns=["task", "metric"], values="value", aggfunc="first").reset_index()) + "\n")
        rec = m[m.task == "recommend"]
        if len(rec):
            md.append("Treatment recommendation (utility = −volume at the horizon − treatment burden):\n\n")
            md.append(_table(rec.pivot_table(index="model", columns="metric", values="value", aggfunc="first").reset_index()) + "\n")
        md.append(f"Full table: `{_rel(results / 'metrics' / f'gamma-{format_gamma(g)}.parquet', here)}`.\n")

    io.atomic_write_text(out, "\n".join(md))


def write_summary_nsclc(cfg: Config, results_dir: str | Path, out: str | Path, out_figure: str | Path) -> None:
    """Summary of an NSCLC-model run: cohort, factual courses, counterfactual outcomes, trials."""
    from oncobench.trials.analysis import km_curve
    from oncobench.trials.spec import DAYS_PER_MONTH

    results = Path(results_dir)
    out = Path(out)
    here = out.parent
    shards = range(cfg.cohort.shards)
    cohort_df = pd.concat([io.read_table(results / "cohort" / f"shard-{k}.parquet", schemas.NsclcCohort) for k in shards], ignore_index=True)
    cf = pd.concat(
        [io.read_table(results / "counterfactuals" / "regimens" / f"shard-{k}.parquet", schemas.NsclcOutcome) for k in shards],
        ignore_index=True,
    )
    curves = {}
    for name, part in cf[cf.replicate == 0].groupby("regimen", sort=False):
        t, s = km_curve(part.os_days.to_numpy(), part.os_event.to_numpy())
        curves[name] = (t / DAYS_PER_MONTH, s)
    figures.save(
        figures.plot_survival_by_regimen(curves, title="Overall survival of the whole cohort under each first-line regimen"),
        out_figure,
    )

    md: list[str] = [f"# oncobench run summary ({cfg.tracking.release})\n"]
    md.append(
        f"oncobench {__version__}, commit `{io.git_commit()[:12]}`, config hash `{cfg.hash()}`, seed {cfg.seed}. "
        f"Model `nsclc` ({cfg.nsclc.region} population), {cfg.cohort.n_patients} patients in {cfg.cohort.shards} shards, "
        f"{cfg.nsclc.horizon_days} days from first-line start, scans every {cfg.nsclc.scan_every_days} days, "
        f"confounding strengths γ = {', '.join(format_gamma(g) for g in cfg.gammas)}.\n"
    )
    md.append("## Cohort\n")
    rows = [
        ("EGFR mutant", (cohort_df.egfr != "wild_type").mean()),
        ("ALK fusion", cohort_df.alk.mean()),
        ("KRAS G12C", cohort_df.kras_g12c.mean()),
        ("PD-L1 TPS >= 50%", (cohort_df.pdl1_group == ">=50%").mean()),
        ("squamous", (cohort_df.histology == "squamous").mean()),
        ("ECOG 2", (cohort_df.ecog == 2).mean()),
        ("stage IV", (cohort_df.stage == "IV").mean()),
        ("median age", cohort_df.age_years.median()),
    ]
    md.append(_table(pd.DataFrame(rows, columns=["covariate", "value"])) + "\n")

    md.append("## Factual courses under the historical policy\n")
    rows = []
    for g in cfg.gammas:
        f = pd.concat(
            [io.read_table(results / "factual" / f"gamma-{format_gamma(g)}" / f"shard-{k}.parquet", schemas.NsclcOutcome) for k in shards],
            ignore_index=True,
        )
        top = f.regimen.value_counts(normalize=True).head(3)
        rows.append(
            {
                "gamma": g,
                "most given (share)": ", ".join(f"{k} ({v:.2f})" for k, v in top.items()),
                "died": f.os_event.mean(),
                "grade >=3 AE": f.grade3_ae.mean(),
                "mean QALYs": f.qalys.mean(),
            }
        )
    md.append(_table(pd.DataFrame(rows)) + "\n")

    md.append("## Counterfactual outcomes by first-line regimen (every patient under every regimen)\n")
    md.append(f"![Overall survival by regimen]({_rel(Path(out_figure), here)})\n")
    rep0 = cf[cf.replicate == 0]
    by = rep0.groupby("regimen", sort=False).agg(
        rmst_days=("os_days", "mean"),
        died=("os_event", "mean"),
        progressed=("pfs_event", "mean"),
        orr=("best_response", lambda x: x.isin(["CR", "PR"]).mean()),
        grade3_ae=("grade3_ae", "mean"),
        qalys=("qalys", "mean"),
        cost_gbp=("cost_gbp", "mean"),
    )
    md.append(_table(by.reset_index()) + "\n")

    md.append("## Virtual trials against their published results\n")
    summary = io.read_table(results / "trials" / "summary.parquet", schemas.TrialSummary)
    for trial, part in summary.groupby("trial", sort=False):
        kind = "calibration trial" if part.calibration.iloc[0] else "not used in the calibration"
        hits = part.within_target.dropna()
        md.append(f"### {trial} ({kind}; {int(hits.sum())} of {len(hits)} within target; {part.replicates.iloc[0]} replicates)\n")
        shown = part[["endpoint", "statistic", "published_text", "simulated_mean", "simulated_lower", "simulated_upper", "within_target"]]
        md.append(_table(shown) + "\n")
        md.append(f"![{trial}]({_rel(results / 'trials' / 'figures' / f'{trial}.png', here)})\n")

    md += verification_section(cfg, results, here)

    md.append("## Treatment recommendation (test patients, bootstrap 95% intervals)\n")
    for g in cfg.gammas:
        m = io.read_table(results / "metrics" / f"gamma-{format_gamma(g)}.parquet", schemas.Metric)
        m = m[m.tier == "all"].copy()
        m["value"] = [_ci(r) for r in m.itertuples()]
        md.append(f"### γ = {format_gamma(g)}\n")
        keep = ["mean_qalys", "rmst_days", "grade3_rate", "qaly_gain_vs_guideline", "survival_benefit_days_vs_guideline",
                "toxicity_avoidance_vs_guideline", "regret", "oracle_agreement"]
        pivot = m[m.metric.isin(keep)].pivot_table(index="model", columns="metric", values="value", aggfunc="first")
        md.append(_table(pivot[[k for k in keep if k in pivot.columns]].reset_index()) + "\n")
    io.atomic_write_text(out, "\n".join(md))
