"""oncobench's ``compat='reference'`` mode against an independent port of the literature generator.

The literature side is :mod:`oncobench.models.geng2017_loop` (a per-patient NumPy loop of the
Causal Transformer's ``simulate_factual``, ``numpy.random.Generator`` draws); the oncobench
side is ``geng2017.draw_cohort`` + ``engine.simulate_course(compat='reference')`` with its
counter-based random numbers. The random numbers differ, so the first group of tests compares
*distributions* with two-sample tests; the last group feeds oncobench's own random numbers
into the literature loop and compares the courses patient by patient.

Statistics. N = 4000 patients per side and per gamma, 60 days, gamma in {0, 2, 10}. Every
test below rejects at p < ALPHA = 0.001:

* continuous / ordinal quantities: two-sample Kolmogorov-Smirnov (conservative for the
  discrete ones: per-patient treatment rates, stop days);
* means of per-patient rates: two-sample z-test (Welch standard error);
* proportions: pooled two-proportion z-test; Fisher's exact test when an expected count is
  below 10 (deaths are about 0.2 %, i.e. 5 to 10 per side);
* category frequencies (stage, type): chi-square test of the 2 x k contingency table, and
  each side against the literature's weights.

Bonferroni note: the distribution tests make 54 such comparisons (parameters: 8 KS + 2 z;
frequencies: 2 contingency + 3 goodness-of-fit; per gamma: 2 KS + 2 z on treatment rates,
2 proportions + 2 KS + 2 z on day-30/59 volumes, 2 proportions + 1 KS on stops = 13, x 3).
With every seed fixed the outcome is deterministic; had the seeds been drawn at random, the
chance that a correct implementation fails at least one comparison is at most
54 x 0.001 = 5.4 % (less: many comparisons are positively correlated). The four type-shift
checks (``test_type_shifts_are_applied``, 4 standard errors, p ~ 6e-5 each) add 0.03 %.

Power. The KS critical distance at this N and alpha is about 1.95 * sqrt(2 / 4000) = 0.044.
Checked by mutating the literature port: a policy intercept of D_max/1.8 instead of D_max/2,
or a 1.5-day instead of 1-day chemo half-life, fail 5 comparisons each. Defects of the
dynamics that small samples cannot see -- a window shifted or widened by one day, a type-1
alpha shift of 0.1 x 0.0398 Gy^-1 against an alpha SD of about 0.1 -- are caught by the
path-by-path tests (the window mutations make 100 to 300 of 1500 courses differ at gamma 2
and 10; at gamma 0 the policy ignores the window). The type-1 alpha shift of oncobench's
cohort is checked directly against its drawing rule in ``test_type_shifts_are_applied``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy import stats

from oncobench import engine, rng, trajectories
from oncobench.models import geng2017 as g
from oncobench.models import geng2017_loop as lit
from oncobench.rng import Stream

N = 4000
DAYS = 60
GAMMAS = (0.0, 2.0, 10.0)
WINDOW = 15
ALPHA = 1e-3
N_TESTS = 54  # for the Bonferroni note in the module docstring
LIT_SEED = {0.0: 1001, 2.0: 1002, 10.0: 1003}
ONCO_SEED = {0.0: 2001, 2.0: 2002, 10.0: 2003}


# --------------------------------------------------------------------------- both sides
@functools.lru_cache(maxsize=None)
def literature(gamma: float) -> dict[str, np.ndarray]:
    r = lit.simulate(N, DAYS, gamma, LIT_SEED[gamma], WINDOW)
    p = r["params"]
    return {
        "initial_volume": p["initial_volumes"],
        "alpha": p["alpha"],
        "beta": p["beta"],
        "rho": p["rho"],
        "beta_c": p["beta_c"],
        "stage": np.array([lit.STAGES.index(s) for s in p["initial_stages"]]),
        "type": p["patient_types"].astype(np.int64),
        "volume": r["cancer_volume"],
        "chemo": r["chemo_application"] > 0,
        "radio": r["radio_application"] > 0,
        "stop_day": r["stop_day"],
        "death": r["death"],
        "recovery": r["recovery"],
    }


@functools.lru_cache(maxsize=None)
def oncobench(gamma: float) -> dict[str, np.ndarray]:
    seed = ONCO_SEED[gamma]
    cohort = g.draw_cohort(seed, torch.arange(N))
    course = engine.simulate_course(
        cohort, seed=seed, days=DAYS, compat="reference", treatment=engine.Policy(gamma, WINDOW)
    )
    return {
        "initial_volume": cohort.initial_volume_cm3.numpy(),
        "alpha": cohort.radio_alpha_per_gy.numpy(),
        "beta": cohort.radio_beta_per_gy2.numpy(),
        "rho": cohort.growth_rate_per_day.numpy(),
        "beta_c": cohort.chemo_beta_c.numpy(),
        "stage": cohort.stage.numpy(),
        "type": cohort.patient_type.numpy(),
        "volume": course.volume_cm3.numpy(),
        "chemo": course.chemo_given.numpy(),
        "radio": course.radio_given.numpy(),
        "stop_day": course.stop_day.numpy(),
        "death": (course.status == g.STATUS_DEAD).numpy(),
        "recovery": (course.status == g.STATUS_RECOVERED).numpy(),
    }


# --------------------------------------------------------------------------- statistics
def ks(a: np.ndarray, b: np.ndarray, what: str) -> None:
    res = stats.ks_2samp(a, b)
    assert res.pvalue > ALPHA, (
        f"{what}: KS D = {res.statistic:.4f}, p = {res.pvalue:.2e} (n = {len(a)}, {len(b)}); "
        f"medians literature {np.median(a):.6g}, oncobench {np.median(b):.6g}"
    )


def mean_z(a: np.ndarray, b: np.ndarray, what: str) -> None:
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = (a.mean() - b.mean()) / se if se > 0 else 0.0
    p = 2 * stats.norm.sf(abs(z))
    assert p > ALPHA, f"{what}: means literature {a.mean():.5f}, oncobench {b.mean():.5f}, z = {z:.2f}, p = {p:.2e}"


def proportions(x_a: int, n_a: int, x_b: int, n_b: int, what: str) -> None:
    pooled = (x_a + x_b) / (n_a + n_b)
    expected_min = min(pooled * n_a, (1 - pooled) * n_a, pooled * n_b, (1 - pooled) * n_b)
    if expected_min < 10:
        p = stats.fisher_exact([[x_a, n_a - x_a], [x_b, n_b - x_b]]).pvalue
        test = "Fisher exact"
    else:
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        z = (x_a / n_a - x_b / n_b) / se
        p = 2 * stats.norm.sf(abs(z))
        test = f"z = {z:.2f}"
    assert p > ALPHA, (
        f"{what}: literature {x_a}/{n_a} = {x_a / n_a:.4f}, oncobench {x_b}/{n_b} = {x_b / n_b:.4f} ({test}, p = {p:.2e})"
    )


def contingency(a: np.ndarray, b: np.ndarray, k: int, what: str) -> None:
    table = np.stack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    res = stats.chi2_contingency(table)
    assert res.pvalue > ALPHA, f"{what}: counts literature {table[0].tolist()}, oncobench {table[1].tolist()}, p = {res.pvalue:.2e}"


def goodness_of_fit(x: np.ndarray, weights: np.ndarray, what: str) -> None:
    counts = np.bincount(x, minlength=len(weights))
    expected = len(x) * weights / weights.sum()
    p = stats.chisquare(counts, expected).pvalue
    assert p > ALPHA, f"{what}: counts {counts.tolist()}, expected {np.round(expected, 1).tolist()}, p = {p:.2e}"


def treatment_rates(side: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Per-patient share of treated days among days 1 .. stop_day - 1 (the policy never treats
    on day 0; the stop day is not an active entry). Patients stopping on day 1 have no such day."""
    day = np.arange(DAYS)[None, :]
    active = (day >= 1) & (day < side["stop_day"][:, None])
    n_days = active.sum(axis=1)
    keep = n_days > 0
    return (side[key] & active).sum(axis=1)[keep] / n_days[keep]


# --------------------------------------------------------------------------- parameters
def test_parameter_distributions_match():
    a, b = literature(0.0), oncobench(0.0)
    ks(np.log(a["initial_volume"]), np.log(b["initial_volume"]), "log initial volume")
    ks(a["alpha"], b["alpha"], "alpha (type shift included)")
    ks(a["rho"], b["rho"], "rho")
    ks(a["beta_c"], b["beta_c"], "beta_c (type shift included)")
    # beta = alpha / 10 after the type shift, on both sides
    np.testing.assert_allclose(a["beta"], a["alpha"] / 10, rtol=1e-12)
    np.testing.assert_allclose(b["beta"], b["alpha"] / 10, rtol=1e-12)
    # the joint law: alpha and rho conditional on type 1 (shifted alpha) only
    ks(a["alpha"][a["type"] == 1], b["alpha"][b["type"] == 1], "alpha of type-1 patients")
    ks(a["beta_c"][a["type"] == 3], b["beta_c"][b["type"] == 3], "beta_c of type-3 patients")
    ks(np.log(a["initial_volume"][a["stage"] == 0]), np.log(b["initial_volume"][b["stage"] == 0]), "log V0, stage I")
    ks(np.log(a["initial_volume"][a["stage"] == 4]), np.log(b["initial_volume"][b["stage"] == 4]), "log V0, stage IV")
    mean_z(a["alpha"], b["alpha"], "mean alpha")
    mean_z(a["rho"], b["rho"], "mean rho")


def test_stage_and_type_frequencies_match():
    a, b = literature(0.0), oncobench(0.0)
    contingency(a["stage"], b["stage"], 5, "stage")
    contingency(a["type"] - 1, b["type"] - 1, 3, "patient type")
    weights = np.array([lit.CANCER_STAGE_OBSERVATIONS[s] for s in lit.STAGES], dtype=float)
    goodness_of_fit(a["stage"], weights, "literature stage vs weights")
    goodness_of_fit(b["stage"], weights, "oncobench stage vs weights")
    goodness_of_fit(b["type"] - 1, np.ones(3), "oncobench type vs uniform")


def test_type_shifts_are_applied():
    """E[alpha | type 1] - E[alpha | type 2] = 0.1 x 0.0398 and E[beta_c | type 3] -
    E[beta_c | type 2] = 0.1 x 0.028 (ref §1), on both sides, within 4 standard errors.
    200,000 patients: the alpha shift is about 7 standard errors there."""
    n = 200_000
    p = lit.draw_params(n, np.random.default_rng(5))
    c = g.draw_cohort(5, torch.arange(n))
    sides = {
        "literature": (p["patient_types"], p["alpha"], p["beta_c"]),
        "oncobench": (c.patient_type.numpy(), c.radio_alpha_per_gy.numpy(), c.chemo_beta_c.numpy()),
    }
    for name, (ptype, alpha, beta_c) in sides.items():
        for x, shifted, expected in ((alpha, 1, 0.1 * 0.0398), (beta_c, 3, 0.1 * 0.028)):
            a, b = x[ptype == shifted], x[ptype == 2]
            diff = a.mean() - b.mean()
            se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            assert abs(diff - expected) < 4 * se, f"{name}: type-{shifted} shift {diff:.5f}, expected {expected:.5f} (SE {se:.5f})"


def test_initial_diameters_respect_the_truncation():
    for side in (literature(0.0), oncobench(0.0)):
        d = 2 * (side["initial_volume"] * 3 / (4 * np.pi)) ** (1 / 3)
        assert d.min() >= 0.3 - 1e-9
        assert d[side["stage"] == 0].max() <= 5.0 + 1e-9
        assert d.max() <= 13.0 + 1e-9


# --------------------------------------------------------------------------- courses
@pytest.mark.parametrize("gamma", GAMMAS)
def test_treatment_rates_match(gamma):
    a, b = literature(gamma), oncobench(gamma)
    for key in ("chemo", "radio"):
        ra, rb = treatment_rates(a, key), treatment_rates(b, key)
        ks(ra, rb, f"gamma={gamma:g}: per-patient {key} rate")
        mean_z(ra, rb, f"gamma={gamma:g}: mean per-patient {key} rate")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_volumes_of_patients_still_alive_match(gamma):
    a, b = literature(gamma), oncobench(gamma)
    for day in (30, 59):
        alive_a = a["stop_day"] > day
        alive_b = b["stop_day"] > day
        proportions(int(alive_a.sum()), N, int(alive_b.sum()), N, f"gamma={gamma:g}: share without a stop by day {day}")
        va, vb = a["volume"][alive_a, day], b["volume"][alive_b, day]
        assert (va > 0).all() and (vb > 0).all()
        ks(np.log(va), np.log(vb), f"gamma={gamma:g}: log volume on day {day} (no stop yet)")
        mean_z(np.log(va), np.log(vb), f"gamma={gamma:g}: mean log volume on day {day}")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_death_recovery_and_stop_days_match(gamma):
    a, b = literature(gamma), oncobench(gamma)
    proportions(int(a["death"].sum()), N, int(b["death"].sum()), N, f"gamma={gamma:g}: deaths")
    proportions(int(a["recovery"].sum()), N, int(b["recovery"].sum()), N, f"gamma={gamma:g}: recoveries")
    stopped_a = a["stop_day"][a["death"] | a["recovery"]]
    stopped_b = b["stop_day"][b["death"] | b["recovery"]]
    ks(stopped_a, stopped_b, f"gamma={gamma:g}: day of stop (patients who stopped)")
    # death happens early (initial diameters are truncated at the death threshold, ref §3.4)
    assert a["stop_day"][a["death"]].max(initial=0) <= 5 and b["stop_day"][b["death"]].max(initial=0) <= 5


# --------------------------------------------------------------------------- path by path
PATH_N = 1500


@functools.lru_cache(maxsize=None)
def shared_noise_pair(gamma: float):
    """oncobench's course and the literature loop run on oncobench's cohort *and* random numbers.

    The draws are rebuilt from the engine's streams as ``engine.simulate_course`` uses them
    (process noise ``normal(PROCESS_NOISE, t)``, recovery ``uniform(RECOVERY, t)``, chemo and
    radio the two halves of ``uniform_pair(POLICY, t)``); if the engine renumbers or reorders
    its streams, update this function, not the tolerance."""
    seed = 31
    cohort = g.draw_cohort(seed, torch.arange(PATH_N))
    course = engine.simulate_course(
        cohort, seed=seed, days=DAYS, compat="reference", treatment=engine.Policy(gamma, WINDOW)
    )
    keys = engine.noise_keys(seed, cohort, 0, compat="reference", policy=True, observed=False)
    noise = torch.stack([rng.normal(keys[Stream.PROCESS_NOISE], t) for t in range(DAYS)], 1).numpy()
    rec = torch.stack([rng.uniform(keys[Stream.RECOVERY], t) for t in range(DAYS)], 1).numpy()
    pairs = [rng.uniform_pair(keys[Stream.POLICY], t) for t in range(DAYS)]
    chemo_u = torch.stack([p[0] for p in pairs], 1).numpy()
    radio_u = torch.stack([p[1] for p in pairs], 1).numpy()
    runs = []
    for i in range(PATH_N):
        params_i = {
            "initial_volumes": cohort.initial_volume_cm3[i].item(),
            "alpha": cohort.radio_alpha_per_gy[i].item(),
            "beta": cohort.radio_beta_per_gy2[i].item(),
            "beta_c": cohort.chemo_beta_c[i].item(),
            "rho": cohort.growth_rate_per_day[i].item(),
            "K": cohort.carrying_capacity_cm3[i].item(),
        }
        draws = {"noise": noise[i], "recovery": rec[i], "chemo": chemo_u[i], "radio": radio_u[i]}
        runs.append(lit.simulate_patient(params_i, DAYS, gamma, None, WINDOW, draws=draws))
    return course, runs


@pytest.mark.parametrize("gamma", GAMMAS)
def test_same_random_numbers_give_the_same_courses(gamma):
    """With oncobench's random numbers fed into the literature loop, every course agrees:
    stop day and kind, treatments on every active day, volumes up to rounding."""
    course, runs = shared_noise_pair(gamma)
    stop = course.stop_day.numpy()
    status = course.status.numpy()
    vol = course.volume_cm3.numpy()
    chemo = course.chemo_given.numpy()
    radio = course.radio_given.numpy()
    bad = []
    for i, r in enumerate(runs):
        s = r["stop_day"]
        kind = g.STATUS_DEAD if r["death"] else g.STATUS_RECOVERED if r["recovery"] else g.STATUS_ALIVE
        last = min(s, DAYS - 1)
        same = (
            s == stop[i]
            and kind == status[i]
            and np.array_equal(r["chemo_application"][:s] > 0, chemo[i, :s])
            and np.array_equal(r["radio_application"][:s] > 0, radio[i, :s])
            and np.allclose(r["cancer_volume"][: last + 1], vol[i, : last + 1], rtol=1e-9, atol=0.0)
        )
        if not same:
            bad.append(i)
    assert not bad, f"gamma={gamma:g}: {len(bad)} of {PATH_N} courses differ, first patients {bad[:5]}"


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sequence_length_matches_the_literature(gamma):
    """The literature sets ``sequence_lengths = t`` for the last loop index t: the stop day,
    or T - 1 for a patient alive at the horizon (CT ``simulate_factual``; its active entries
    are the T - 1 one-day-ahead outputs). oncobench's reference mode must give the same.

    Known mismatch (fails at the time of writing): ``trajectories.sequence_length(course,
    'reference')`` gives ``days`` (60) for patients alive at the horizon, the literature 59;
    for patients who stop, both give the stop day. So the Trajectory table's ``active`` column
    marks day 59 of every survivor active where the literature does not. Fix it in
    ``trajectories.sequence_length`` (``clamp(stop_day, max=days - 1)`` in the reference mode)
    or, if 60 is a deliberate departure, document it and mark this test xfail."""
    course, runs = shared_noise_pair(gamma)
    ours = trajectories.sequence_length(course, "reference").numpy()
    theirs = np.array([r["sequence_length"] for r in runs])
    stopped = np.array([r["death"] or r["recovery"] for r in runs])
    np.testing.assert_array_equal(ours[stopped], theirs[stopped], err_msg="patients with a stop")
    np.testing.assert_array_equal(
        ours[~stopped], theirs[~stopped],
        err_msg=f"patients alive at the horizon: literature sequence_lengths = T - 1 = {DAYS - 1}",
    )
