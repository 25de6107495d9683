"""Statistical analysis of virtual trials: cut-off censoring, KM medians, Cox HRs, log-rank tests.

Input is the per-patient trial outcome frame of ``docs/nsclc-contracts.md`` (``replicate, arm,
patient_id, enrol_day, pfs_days, pfs_event, os_days, os_event, best_response, grade3_ae``; times in
days from randomisation). :func:`analyse_trial` censors each endpoint at the spec's data cut-off
and analyses every replicate; :func:`summarise` compares the replicates with the published results.

Speed: lifelines' fitters cost 5-35 ms per call, too slow for 200 replicates x 2 endpoints, so the
default ``engine="numpy"`` computes the same estimators directly: the Kaplan-Meier median as
lifelines does (``S(t) = exp(sum log((n-d)/n))``, first time with ``S <= 0.5``), the Cox model
with one binary covariate by Newton-Raphson on Efron's partial likelihood (lifelines' default tie
handling), and the Mantel-Haenszel log-rank statistic (lifelines' ``logrank_test``). The tests
check each against lifelines; ``engine="lifelines"`` runs lifelines itself (fitters reused).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd
from scipy import stats

from oncobench.trials.spec import DAYS_PER_MONTH, ENDPOINTS, ArmValues, HazardRatio, TrialSpec

Engine = Literal["numpy", "lifelines"]

Z_95 = float(stats.norm.ppf(0.975))
"""Normal quantile of a two-sided 95% interval (lifelines' ``alpha=0.05``)."""

HR_TARGET = "simulated mean HR inside the published 95% CI"
MEDIAN_REL_TOL = 0.15
"""Calibration target: a simulated median within 15% (relative) of the published median."""
RATE_ABS_TOL = 0.10
"""Calibration target: a simulated rate (ORR, grade>=3 AE) within 10 percentage points of the published one."""

RESPONDERS = ("CR", "PR")
TIME_ENDPOINTS = ("pfs", "os")


# --------------------------------------------------------------------------------------------
# Data cut-off


def apply_cutoff(df: pd.DataFrame, cutoff_day: float) -> pd.DataFrame:
    """Administrative censoring at a data cut-off ``cutoff_day`` days after the first enrolment.

    Each patient's available follow-up is ``cutoff_day - enrol_day``; PFS and OS times beyond it
    become censored at it (an event later than the cut-off is not yet known); patients enrolled
    after the cut-off are dropped. Where the frame has ``grade3_ae_day``, a grade >= 3 event after
    the follow-up is not yet known either (``grade3_ae`` False, its day NaN); ``best_response``
    carries no date and is kept as it is. Applying the same cut-off twice changes nothing.
    """
    enrol = df["enrol_day"].to_numpy(dtype=float)
    keep = enrol <= cutoff_day
    out = df.loc[keep].copy()
    follow_up = cutoff_day - enrol[keep]
    for ep in TIME_ENDPOINTS:
        if f"{ep}_days" not in out.columns:
            continue
        t = out[f"{ep}_days"].to_numpy(dtype=float)
        e = out[f"{ep}_event"].to_numpy(dtype=bool)
        late = t > follow_up
        out[f"{ep}_days"] = np.where(late, follow_up, t)
        out[f"{ep}_event"] = e & ~late
    if "grade3_ae_day" in out.columns:
        day = out["grade3_ae_day"].to_numpy(dtype=float)
        known = day <= follow_up  # False for NaN (no event)
        out["grade3_ae"] = out["grade3_ae"].to_numpy(dtype=bool) & known
        out["grade3_ae_day"] = np.where(known, day, np.nan)
    return out


# --------------------------------------------------------------------------------------------
# Estimators (numpy)


def km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Kaplan-Meier median survival time (same unit as ``time``); NaN when not reached.

    Same definition as lifelines' ``KaplanMeierFitter.median_survival_time_``: the first time
    at which the product-limit estimate is <= 0.5.
    """
    time = np.asarray(time, dtype=float)
    if time.size == 0:
        return math.nan
    uniq, inv = np.unique(time, return_inverse=True)
    deaths = np.bincount(inv, weights=np.asarray(event, dtype=float), minlength=uniq.size)
    at_risk = np.bincount(inv, minlength=uniq.size)[::-1].cumsum()[::-1].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.exp(np.cumsum(np.log(at_risk - deaths) - np.log(at_risk)))
    hit = np.flatnonzero(surv <= 0.5)
    return float(uniq[hit[0]]) if hit.size else math.nan


def km_curve(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier step function: times (starting at 0) and survival just after each time."""
    time = np.asarray(time, dtype=float)
    if time.size == 0:
        return np.array([0.0]), np.array([1.0])
    uniq, inv = np.unique(time, return_inverse=True)
    deaths = np.bincount(inv, weights=np.asarray(event, dtype=float), minlength=uniq.size)
    at_risk = np.bincount(inv, minlength=uniq.size)[::-1].cumsum()[::-1].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.exp(np.cumsum(np.log(at_risk - deaths) - np.log(at_risk)))
    return np.concatenate([[0.0], uniq]), np.concatenate([[1.0], surv])


def _risk_table(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, ...]:
    """At each distinct event time: at risk in group 1 and 0, events in group 1 and 0."""
    uniq, inv = np.unique(time, return_inverse=True)
    k = uniq.size
    g = group.astype(float)
    e = event.astype(float)
    n1 = np.bincount(inv, weights=g, minlength=k)
    n = np.bincount(inv, minlength=k).astype(float)
    d = np.bincount(inv, weights=e, minlength=k)
    d1 = np.bincount(inv, weights=e * g, minlength=k)
    r = n[::-1].cumsum()[::-1]
    r1 = n1[::-1].cumsum()[::-1]
    keep = d > 0
    return r1[keep], (r - r1)[keep], d1[keep], (d - d1)[keep]


def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Two-sample log-rank test of ``group`` (bool) vs the rest: ``(chi-square statistic, p-value)``."""
    r1, r0, d1, d0 = _risk_table(np.asarray(time, float), np.asarray(event, bool), np.asarray(group, bool))
    r = r1 + r0
    d = d1 + d0
    if d.sum() == 0 or r1.size == 0:
        return math.nan, math.nan
    expected = d * r1 / r
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(r > 1, d * (r1 / r) * (r0 / r) * (r - d) / (r - 1), 0.0)
    v = var.sum()
    if v <= 0:
        return math.nan, math.nan
    chi2 = float((d1.sum() - expected.sum()) ** 2 / v)
    return chi2, float(stats.chi2.sf(chi2, 1))


def cox_binary(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Cox proportional-hazards fit with one binary covariate (Efron ties): ``(log HR, SE)``.

    ``group`` is True for the arm whose hazard is compared with the rest. NaN when an arm has no
    events (the estimate is then unbounded) or the fit does not converge.
    """
    r1, r0, d1, d0 = _risk_table(np.asarray(time, float), np.asarray(event, bool), np.asarray(group, bool))
    if d1.sum() == 0 or d0.sum() == 0:
        return math.nan, math.nan
    dj = (d1 + d0).astype(np.int64)
    rows = np.repeat(np.arange(dj.size), dj)
    frac = (np.arange(rows.size) - np.repeat(np.cumsum(dj) - dj, dj)) / dj[rows]
    a0 = r0[rows] - frac * d0[rows]
    a1 = r1[rows] - frac * d1[rows]
    events1 = float(d1.sum())

    def loglik(beta: float) -> float:
        return beta * events1 - float(np.log(a0 + a1 * math.exp(beta)).sum())

    beta, ll = 0.0, loglik(0.0)
    for _ in range(100):
        w = math.exp(beta)
        p = a1 * w / (a0 + a1 * w)
        score = events1 - float(p.sum())
        info = float((p * (1.0 - p)).sum())
        if info <= 0:
            return math.nan, math.nan
        step = score / info
        # The log partial likelihood is concave in beta; halve the Newton step if it overshoots.
        for _ in range(30):
            new_ll = loglik(beta + step)
            if new_ll >= ll - 1e-12:
                break
            step /= 2.0
        beta, ll = beta + step, new_ll
        if abs(step) < 1e-10:
            break
    else:
        return math.nan, math.nan
    w = math.exp(beta)
    p = a1 * w / (a0 + a1 * w)
    info = float((p * (1.0 - p)).sum())
    return beta, 1.0 / math.sqrt(info) if info > 0 else math.nan


# --------------------------------------------------------------------------------------------
# Estimators (lifelines, for reference and cross-checks)


class _Lifelines:
    """lifelines' fitters, created once and refitted per replicate."""

    def __init__(self) -> None:
        from lifelines import CoxPHFitter, KaplanMeierFitter

        self.km_fitter = KaplanMeierFitter()
        self.cox_fitter = CoxPHFitter()

    def median(self, time: np.ndarray, event: np.ndarray) -> float:
        if len(time) == 0:
            return math.nan
        self.km_fitter.fit(time, event)
        m = float(self.km_fitter.median_survival_time_)
        return m if math.isfinite(m) else math.nan

    def cox(self, time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
        frame = pd.DataFrame({"T": time, "E": event.astype(bool), "experimental": group.astype(float)})
        self.cox_fitter.fit(frame, "T", "E")
        return float(self.cox_fitter.params_["experimental"]), float(self.cox_fitter.standard_errors_["experimental"])

    @staticmethod
    def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
        from lifelines.statistics import logrank_test

        res = logrank_test(time[group], time[~group], event[group], event[~group])
        return float(res.test_statistic), float(res.p_value)


# --------------------------------------------------------------------------------------------
# One replicate, one trial


def _analyse_arrays(arm: np.ndarray, cols: dict[str, np.ndarray], experimental: str, control: str,
                    endpoints: Iterable[str], lib: _Lifelines | None) -> dict[str, float]:
    is_e = arm == experimental
    is_c = arm == control
    sub = is_e | is_c
    g = is_e[sub]
    out: dict[str, float] = {"n_experimental": float(is_e.sum()), "n_control": float(is_c.sum())}
    for ep in endpoints:
        if ep in TIME_ENDPOINTS:
            t = cols[f"{ep}_days"][sub]
            e = cols[f"{ep}_event"][sub]
            out[f"{ep}_events_experimental"] = float(e[g].sum())
            out[f"{ep}_events_control"] = float(e[~g].sum())
            out[f"{ep}_events"] = float(e.sum())
            median = lib.median if lib is not None else km_median
            out[f"{ep}_median_months_experimental"] = median(t[g], e[g]) / DAYS_PER_MONTH
            out[f"{ep}_median_months_control"] = median(t[~g], e[~g]) / DAYS_PER_MONTH
            if g.any() and (~g).any():
                log_hr, se = lib.cox(t, e, g) if lib is not None else cox_binary(t, e, g)
                _, p = lib.logrank(t, e, g) if lib is not None else logrank(t, e, g)
            else:
                log_hr, se, p = math.nan, math.nan, math.nan
            out[f"{ep}_hr"] = math.exp(log_hr)
            out[f"{ep}_hr_lower"] = math.exp(log_hr - Z_95 * se)
            out[f"{ep}_hr_upper"] = math.exp(log_hr + Z_95 * se)
            out[f"{ep}_logrank_p"] = p
        elif ep in ("orr", "grade3_ae"):
            flag = cols[ep]
            out[f"{ep}_experimental"] = float(flag[is_e].mean()) if is_e.any() else math.nan
            out[f"{ep}_control"] = float(flag[is_c].mean()) if is_c.any() else math.nan
        else:
            raise ValueError(f"unknown endpoint {ep!r}; expected one of {list(ENDPOINTS)}")
    return out


def _columns(df: pd.DataFrame, endpoints: Iterable[str]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for ep in endpoints:
        if ep in TIME_ENDPOINTS:
            cols[f"{ep}_days"] = df[f"{ep}_days"].to_numpy(dtype=float)
            cols[f"{ep}_event"] = df[f"{ep}_event"].to_numpy(dtype=bool)
        elif ep == "orr":
            cols["orr"] = df["best_response"].isin(RESPONDERS).to_numpy()
        elif ep == "grade3_ae":
            cols["grade3_ae"] = df["grade3_ae"].to_numpy(dtype=bool)
    return cols


def analyse_replicate(df: pd.DataFrame, *, experimental: str, control: str,
                      endpoints: Iterable[str] = ENDPOINTS, engine: Engine = "numpy") -> dict[str, float]:
    """Analyse one replicate (already censored at its cut-off, e.g. by :func:`apply_cutoff`).

    Args:
        df: the per-patient outcome rows of one replicate.
        experimental: arm name compared with ``control``.
        control: the reference arm.
        endpoints: subset of ``pfs, os, orr, grade3_ae``.
        engine: ``"numpy"`` (fast, default) or ``"lifelines"`` (reference).

    Returns:
        ``n_experimental``, ``n_control``; per time endpoint ``ep`` in (pfs, os):
        ``{ep}_median_months_{experimental,control}`` (KM median, months of 30.4375 days, NaN when
        not reached), ``{ep}_hr``, ``{ep}_hr_lower``, ``{ep}_hr_upper`` (Cox, arm as the only
        covariate, 95% Wald CI), ``{ep}_logrank_p``, ``{ep}_events[_experimental|_control]``;
        ``orr_{arm}`` (CR or PR among all randomised) and ``grade3_ae_{arm}``.
    """
    endpoints = tuple(endpoints)
    lib = _Lifelines() if engine == "lifelines" else None
    return _analyse_arrays(df["arm"].to_numpy(), _columns(df, endpoints), experimental, control, endpoints, lib)


def analyse_trial(df: pd.DataFrame, spec: TrialSpec, *, engine: Engine = "numpy") -> pd.DataFrame:
    """Analyse every replicate of a simulated trial at the spec's data cut-offs.

    Each endpoint is censored at its own cut-off (``spec.cutoff_day``) by :func:`apply_cutoff`,
    then :func:`analyse_replicate` compares ``spec.experimental_arm`` with ``spec.control_arm``.
    ``n_experimental``/``n_control`` count the patients enrolled by the latest cut-off.

    Returns:
        One row per replicate: ``replicate`` and the columns of :func:`analyse_replicate`.
    """
    experimental, control = spec.experimental_arm.name, spec.control_arm.name
    lib = _Lifelines() if engine == "lifelines" else None
    by_cutoff: dict[float, list[str]] = {}
    for ep in spec.endpoints:
        by_cutoff.setdefault(spec.cutoff_day(ep), []).append(ep)
    rows: dict[int, dict[str, float]] = {}
    for cutoff in sorted(by_cutoff):  # the latest cut-off last: its patient counts are kept
        eps = by_cutoff[cutoff]
        cut = apply_cutoff(df, cutoff).sort_values("replicate", kind="stable")
        reps = cut["replicate"].to_numpy()
        arm = cut["arm"].to_numpy()
        cols = _columns(cut, eps)
        ids, starts = np.unique(reps, return_index=True)
        bounds = np.append(starts, reps.size)
        for rep, lo, hi in zip(ids.tolist(), bounds[:-1], bounds[1:]):
            part = {k: v[lo:hi] for k, v in cols.items()}
            rows.setdefault(int(rep), {}).update(_analyse_arrays(arm[lo:hi], part, experimental, control, eps, lib))
    out = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    out.insert(0, "replicate", out.index.astype(np.int64))
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Summary against the published results


def _row(endpoint: str, statistic: str, values: np.ndarray, published: float | None, lower: float | None = None,
         upper: float | None = None, *, log_scale: bool = False, text: str = "", target: str = "") -> dict:
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        mean = lo = hi = math.nan
    elif log_scale:
        mean = float(np.exp(np.mean(np.log(finite))))
        lo, hi = (float(x) for x in np.percentile(finite, [2.5, 97.5]))
    else:
        mean = float(finite.mean())
        lo, hi = (float(x) for x in np.percentile(finite, [2.5, 97.5]))
    return {
        "endpoint": endpoint, "statistic": statistic,
        "published": math.nan if published is None else float(published),
        "published_lower": math.nan if lower is None else float(lower),
        "published_upper": math.nan if upper is None else float(upper),
        "published_text": text,
        "simulated_mean": mean, "simulated_lower": lo, "simulated_upper": hi,
        "share_finite": float(finite.size / v.size) if v.size else math.nan,
        "power": math.nan, "within_target": None, "target": target,
    }


def summarise(per_replicate: pd.DataFrame, spec: TrialSpec, alpha: float = 0.05) -> pd.DataFrame:
    """Compare the replicates of :func:`analyse_trial` with the spec's published results.

    One row per (endpoint, statistic): ``published`` (with ``published_lower``/``_upper`` for
    HRs), ``simulated_mean`` (HRs: geometric mean, i.e. averaged on the log scale; medians: over
    the replicates that reach the median), ``simulated_lower``/``_upper`` (2.5 and 97.5
    percentiles across replicates), ``share_finite`` (share of replicates with a value; for a
    median, the share reaching it), ``power`` (HR rows: share of replicates with log-rank
    p < ``alpha`` and HR < 1) and ``within_target`` (nullable bool, NA without a published value):

    * HR: the simulated mean HR lies inside the published 95% CI;
    * median: at least half of the replicates reach the median and the mean is within 15%
      (relative) of the published one; a median published as not reached is on target when
      fewer than half of the replicates reach it;
    * ORR and grade>=3 AE rate: within 10 percentage points of the published rate.
    """
    pub = spec.published
    rows: list[dict] = []
    for ep in TIME_ENDPOINTS:
        if ep not in spec.endpoints:
            continue
        hr_pub: HazardRatio | None = getattr(pub, f"{ep}_hr") if pub else None
        hr = per_replicate[f"{ep}_hr"].to_numpy(dtype=float)
        p = per_replicate[f"{ep}_logrank_p"].to_numpy(dtype=float)
        text = f"{hr_pub.estimate:.2f} ({hr_pub.lower:.2f}-{hr_pub.upper:.2f})" if hr_pub else ""
        row = _row(ep, "hr", hr, hr_pub.estimate if hr_pub else None, hr_pub.lower if hr_pub else None,
                   hr_pub.upper if hr_pub else None, log_scale=True, text=text, target=HR_TARGET)
        with np.errstate(invalid="ignore"):
            row["power"] = float(np.mean((p < alpha) & (hr < 1.0))) if hr.size else math.nan
        if hr_pub is not None and math.isfinite(row["simulated_mean"]):
            row["within_target"] = bool(hr_pub.lower <= row["simulated_mean"] <= hr_pub.upper)
        elif hr_pub is not None:
            row["within_target"] = False
        rows.append(row)
        med_pub: ArmValues | None = getattr(pub, f"{ep}_median_months") if pub else None
        for side in ("experimental", "control"):
            values = per_replicate[f"{ep}_median_months_{side}"].to_numpy(dtype=float)
            value = getattr(med_pub, side) if med_pub else None
            text = "" if med_pub is None else ("not reached" if value is None else f"{value:g}")
            row = _row(ep, f"median_months_{side}", values, value, text=text,
                       target=f"within {MEDIAN_REL_TOL:.0%} of the published median")
            if med_pub is not None:
                reached = row["share_finite"] >= 0.5
                if value is None:
                    row["within_target"] = not reached
                else:
                    row["within_target"] = bool(reached and abs(row["simulated_mean"] - value) <= MEDIAN_REL_TOL * value)
            rows.append(row)
    for ep in ("orr", "grade3_ae"):
        if ep not in spec.endpoints:
            continue
        rate_pub: ArmValues | None = getattr(pub, ep) if pub else None
        for side in ("experimental", "control"):
            value = getattr(rate_pub, side) if rate_pub else None
            row = _row(ep, side, per_replicate[f"{ep}_{side}"].to_numpy(dtype=float), value,
                       text="" if value is None else f"{value:.1%}",
                       target=f"within {RATE_ABS_TOL * 100:.0f} percentage points")
            if value is not None:
                row["within_target"] = bool(math.isfinite(row["simulated_mean"])
                                            and abs(row["simulated_mean"] - value) <= RATE_ABS_TOL + 1e-12)
            rows.append(row)
    out = pd.DataFrame(rows)
    if not out.empty:
        out["within_target"] = pd.array(out["within_target"].tolist(), dtype="boolean")
    return out


# --------------------------------------------------------------------------------------------
# Figure


def km_figure(df: pd.DataFrame, spec: TrialSpec, path: str | Path, *, replicate: int | None = None) -> Path:
    """Kaplan-Meier curves per arm for PFS and OS (two panels), written atomically as PNG.

    Args:
        df: per-patient outcomes; raw simulator output is fine, each endpoint is censored at the
            spec's cut-off here (applying a cut-off twice changes nothing).
        spec: the trial (arms, cut-offs, published medians).
        path: the PNG to write (saved to a temporary file in the same folder, then renamed).
        replicate: draw this replicate only; None pools all replicates.

    Returns:
        The path written. Published medians are marked by ticks on the S = 0.5 line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if replicate is not None:
        df = df[df["replicate"] == replicate]
    exp_name, ctl_name = spec.experimental_arm.name, spec.control_arm.name
    colours = {exp_name: "tab:blue", ctl_name: "tab:red"}
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, ep in zip(axes, TIME_ENDPOINTS):
        cutoff = spec.cutoff_day(ep) if ep in spec.endpoints else max(spec.cutoff_day(e) for e in spec.endpoints)
        cut = apply_cutoff(df, cutoff)
        for arm in spec.arms:
            part = cut[cut["arm"] == arm.name]
            if part.empty:
                continue
            t = part[f"{ep}_days"].to_numpy(dtype=float)
            e = part[f"{ep}_event"].to_numpy(dtype=bool)
            x, s = km_curve(t, e)
            med = km_median(t, e) / DAYS_PER_MONTH
            label = f"{arm.name} (n={len(part)}, median {'NR' if math.isnan(med) else f'{med:.1f}'} mo)"
            ax.step(x / DAYS_PER_MONTH, s, where="post", color=colours.get(arm.name, "tab:grey"), lw=1.4, label=label)
        ax.axhline(0.5, color="black", lw=0.6, ls=":")
        published = getattr(spec.published, f"{ep}_median_months") if spec.published else None
        if published is not None:
            for side, name in (("experimental", exp_name), ("control", ctl_name)):
                value = getattr(published, side)
                if value is not None:
                    ax.vlines(value, 0.42, 0.58, color=colours[name], lw=2.5,
                              label=f"published median {name}: {value:g} mo")
        ax.set_title(f"{ep.upper()} (cut-off {cutoff / DAYS_PER_MONTH:.1f} mo)")
        ax.set_xlabel("months from randomisation")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("survival probability")
    pooled = "pooled replicates" if replicate is None else f"replicate {replicate}"
    fig.suptitle(f"{spec.title} ({pooled})", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "MEDIAN_REL_TOL", "RATE_ABS_TOL", "analyse_replicate", "analyse_trial", "apply_cutoff", "cox_binary",
    "km_curve", "km_figure", "km_median", "logrank", "summarise",
]
