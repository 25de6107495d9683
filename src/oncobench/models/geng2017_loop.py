"""The literature's tumour-growth generator as a plain per-patient Python loop.

An independent NumPy port of the factual simulation of the RMSN / CRN / Causal Transformer
generator (CT ``src/data/cancer_sim/cancer_simulation.py``: ``get_standard_params``,
``generate_params`` and ``simulate_factual``), as summarised in
``shared/domain/geng2017-reference-model.md`` ("ref §1"). It serves two purposes:

* an independent check of oncobench's ``compat='reference'`` mode (``tests/test_literature_match.py``):
  it imports nothing from oncobench, so a shared mistake cannot hide;
* the "plain per-patient Python loop of the same model" speed baseline
  (``benchmarks/bench_simulate.py``).

Differences from the original code, none of which changes the distribution:

* random numbers come from a ``numpy.random.Generator`` passed in (never the legacy global
  state, ref §3.7), and scipy's ``truncnorm`` draws through it (``random_state=rng``);
* the per-day noise and uniforms are drawn per patient (``simulate_patient``) instead of as
  ``(n, T)`` arrays up front;
* scalar arithmetic uses :mod:`math` on Python floats; where NumPy would overflow to ``inf``
  (``exp(-V * 5.8e8)`` for ``V <= 0``) the outcome is written out explicitly (recovery is
  certain, as ``U < inf``);
* no tqdm, logging or seaborn.

Kept on purpose (they are the literature's behaviour): the explicit Euler update that can
drive a volume negative, the treatment drawn on the stop day before the death/recovery
checks, and ``sequence_length = t`` for the last loop index ``t`` (a stop day, or ``T - 1``
for a patient alive at the horizon).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import truncnorm

# --------------------------------------------------------------------------- constants (ref §1)


def calc_volume(diameter):
    """Sphere volume from a diameter (cm -> cm3), as CT's ``calc_volume``."""
    return 4.0 / 3.0 * np.pi * (diameter / 2.0) ** 3


def calc_diameter(volume: float) -> float:
    """Sphere diameter from a volume (cm3 -> cm), as CT's ``calc_diameter``."""
    return ((volume / (4.0 / 3.0 * math.pi)) ** (1.0 / 3.0)) * 2.0


# ref §1 "Recovery": TUMOUR_CELL_DENSITY, cells per cm3.
TUMOUR_CELL_DENSITY = 5.8e8
# ref §1 "Death": V_death = (4/3) pi 6.5^3 = 1150.35 cm3 (13 cm diameter).
TUMOUR_DEATH_THRESHOLD = float(calc_volume(13.0))
# ref §1 "Initial stage and volume": (mu, sigma, lower bound, upper bound) of the log-diameter.
TUMOUR_SIZE_DISTRIBUTIONS = {
    "I": (1.72, 4.70, 0.3, 5.0),
    "II": (1.96, 1.63, 0.3, 13.0),
    "IIIA": (1.91, 9.40, 0.3, 13.0),
    "IIIB": (2.76, 6.87, 0.3, 13.0),
    "IV": (3.86, 8.82, 0.3, 13.0),
}
# ref §1: stage weights (Detterbeck & Gibson 2008).
CANCER_STAGE_OBSERVATIONS = {"I": 1432, "II": 128, "IIIA": 1306, "IIIB": 7248, "IV": 12840}
STAGES = tuple(sorted(TUMOUR_SIZE_DISTRIBUTIONS))  # CT sorts: I, II, IIIA, IIIB, IV
# ref §1 "Patient parameters".
K = float(calc_volume(30.0))  # carrying capacity, 30 cm diameter
ALPHA_BETA_RATIO = 10.0
ALPHA_RHO_CORR = 0.87
RHO_PARAMS = (7e-5, 7.23e-3)
ALPHA_PARAMS = (0.0398, 0.168)
BETA_C_PARAMS = (0.028, 0.0007)
# ref §1 "Patient types": type 1 shifts alpha, type 3 shifts beta_c, by 10% of the mean.
TYPE_ADJUSTMENT = 0.1
# ref §1 "Treatment at t": one chemo dose of 5.0 units (1-day half-life), one 2 Gy fraction.
CHEMO_AMOUNT = 5.0
RADIO_AMOUNT_GY = 2.0
DRUG_HALF_LIFE_DAYS = 1.0
CHEMO_DECAY = math.exp(-math.log(2.0) / DRUG_HALF_LIFE_DAYS)
# ref §1 "Volume update": eps ~ N(0, 0.01^2).
NOISE_SD = 0.01
# ref §1 "Treatment at t": D_max = calc_diameter(TUMOUR_DEATH_THRESHOLD) = 13 cm.
D_MAX = calc_diameter(TUMOUR_DEATH_THRESHOLD)


# --------------------------------------------------------------------------- parameters
def draw_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Patient parameters as CT's ``get_standard_params`` draws them (ref §1), shuffled.

    Returns arrays of length ``n``: ``patient_types`` (1..3), ``initial_stages`` (str),
    ``initial_diameters`` (cm), ``initial_volumes`` (cm3), ``alpha``, ``rho``, ``beta``,
    ``beta_c``, ``K``.
    """
    total = sum(CANCER_STAGE_OBSERVATIONS.values())
    p_stage = [CANCER_STAGE_OBSERVATIONS[s] / total for s in STAGES]
    initial_stages = rng.choice(np.array(STAGES), n, p=p_stage)

    # Initial diameter: exp(mu + sigma Z), Z truncated so the diameter lies in [lb, ub] (ref §1 table).
    diam: list[np.ndarray] = []
    stages_out: list[np.ndarray] = []
    for stg in STAGES:
        count = int(np.sum(initial_stages == stg))
        mu, sigma, lower, upper = TUMOUR_SIZE_DISTRIBUTIONS[stg]
        a = (np.log(lower) - mu) / sigma
        b = (np.log(upper) - mu) / sigma
        z = truncnorm.rvs(a, b, size=count, random_state=rng)
        diam.append(np.exp(z * sigma + mu))
        stages_out.append(np.full(count, stg, dtype=object))
    initial_diameters = np.concatenate(diam)
    stages = np.concatenate(stages_out).astype(str)

    # (alpha, rho) bivariate normal, redrawn in batches of n until both > 0 (ref §1).
    cov = np.array(
        [
            [ALPHA_PARAMS[1] ** 2, ALPHA_RHO_CORR * ALPHA_PARAMS[1] * RHO_PARAMS[1]],
            [ALPHA_RHO_CORR * ALPHA_PARAMS[1] * RHO_PARAMS[1], RHO_PARAMS[1] ** 2],
        ]
    )
    mean = np.array([ALPHA_PARAMS[0], RHO_PARAMS[0]])
    kept: list[np.ndarray] = []
    n_kept = 0
    while n_kept < n:
        holder = rng.multivariate_normal(mean, cov, size=n)
        ok = holder[(holder[:, 0] > 0.0) & (holder[:, 1] > 0.0)]
        kept.append(ok)
        n_kept += len(ok)
    alpha_rho = np.concatenate(kept)[:n]

    # Patient types and their shifts (ref §1 "Patient types"); beta follows the shifted alpha.
    patient_types = rng.choice([1, 2, 3], n)
    chemo_adj = np.where(patient_types == 3, TYPE_ADJUSTMENT, 0.0)
    radio_adj = np.where(patient_types == 1, TYPE_ADJUSTMENT, 0.0)
    alpha = alpha_rho[:, 0] + ALPHA_PARAMS[0] * radio_adj
    rho = alpha_rho[:, 1]
    beta = alpha / ALPHA_BETA_RATIO

    # beta_c = 0.028 + 0.0007 Z, Z truncated at (0 - 0.028)/0.0007 = -40 (ref §1).
    lo = (0.0 - BETA_C_PARAMS[0]) / BETA_C_PARAMS[1]
    beta_c = (
        BETA_C_PARAMS[0]
        + BETA_C_PARAMS[1] * truncnorm.rvs(lo, np.inf, size=n, random_state=rng)
        + BETA_C_PARAMS[0] * chemo_adj
    )

    out = {
        "patient_types": patient_types,
        "initial_stages": stages,
        "initial_diameters": initial_diameters,
        "initial_volumes": calc_volume(initial_diameters),
        "alpha": alpha,
        "rho": rho,
        "beta": beta,
        "beta_c": beta_c,
        "K": np.full(n, K),
    }
    # "Randomise output params" (ref §1: patient order is then shuffled).
    idx = rng.permutation(n)
    return {k: v[idx] for k, v in out.items()}


def patient(params: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Patient ``i``'s parameters as Python scalars (the input of :func:`simulate_patient`)."""
    return {k: v[i].item() for k, v in params.items()}


# --------------------------------------------------------------------------- one patient
def simulate_patient(
    params_i: dict,
    days: int,
    gamma: float,
    rng: np.random.Generator | None,
    window: int = 15,
    *,
    draws: dict[str, np.ndarray] | None = None,
) -> dict:
    """One patient's factual course under the confounded policy (CT ``simulate_factual``, ref §1).

    ``params_i`` holds ``initial_volumes``, ``alpha``, ``beta``, ``beta_c``, ``rho``, ``K``
    (scalars). Day 0 is the initial volume; for t = 1 .. days-1 the volume is updated from
    day t-1, then treatment is drawn from the mean diameter of days t-window .. t-1, then
    death and recovery are checked (a stop ends the loop after the stop day's treatment).

    ``draws`` (optional) supplies the random numbers instead of ``rng``: arrays of length
    ``days`` named ``noise`` (standard normal), ``recovery``, ``chemo``, ``radio`` (uniform).
    Index t is used on day t (index 0 is unused).

    Returns the day arrays of CT (``cancer_volume``, ``chemo_dosage``, ``radio_dosage``,
    ``chemo_application``, ``radio_application``, ``chemo_probabilities``,
    ``radio_probabilities``, ``death_flags``, ``recovery_flags``; zero after a stop) and the
    scalars ``sequence_length`` (CT's ``int(t)``), ``stop_day`` (t of death or recovery,
    ``days`` if none), ``death`` and ``recovery``.
    """
    if days < 2:
        raise ValueError("days must be at least 2 (the literature loop starts at t = 1)")
    if draws is None:
        noise = (NOISE_SD * rng.standard_normal(days)).tolist()
        recovery_rvs = rng.random(days).tolist()
        chemo_rvs = rng.random(days).tolist()
        radio_rvs = rng.random(days).tolist()
    else:
        noise = (NOISE_SD * np.asarray(draws["noise"], dtype=np.float64)).tolist()
        recovery_rvs = np.asarray(draws["recovery"], dtype=np.float64).tolist()
        chemo_rvs = np.asarray(draws["chemo"], dtype=np.float64).tolist()
        radio_rvs = np.asarray(draws["radio"], dtype=np.float64).tolist()

    alpha = float(params_i["alpha"])
    beta = float(params_i["beta"])
    beta_c = float(params_i["beta_c"])
    rho = float(params_i["rho"])
    k = float(params_i["K"])
    # generate_params: intercept D_max/2 and slope coeff/D_max for both treatments (ref §1).
    intercept = D_MAX / 2.0
    slope = gamma / D_MAX

    volume = [0.0] * days
    chemo_dosage = [0.0] * days
    radio_dosage = [0.0] * days
    chemo_app = [0.0] * days
    radio_app = [0.0] * days
    chemo_prob_out = [0.0] * days
    radio_prob_out = [0.0] * days
    diameters = [0.0] * days  # calc_diameter(V_s), filled as V_s is written

    volume[0] = float(params_i["initial_volumes"])
    diameters[0] = calc_diameter(volume[0])
    death = recovery = False
    t = 0
    for t in range(1, days):
        v_prev = volume[t - 1]
        d_prev = radio_dosage[t - 1]
        # ref §1 "Volume update" (explicit Euler; may go negative after a strong dose).
        v = v_prev * (
            1.0
            + rho * math.log(k / v_prev)
            - beta_c * chemo_dosage[t - 1]
            - (alpha * d_prev + beta * d_prev * d_prev)
            + noise[t]
        )
        volume[t] = v

        # ref §1 "Treatment at t": window V_{t-15} .. V_{t-1} (CT lag = 0), mean diameter.
        lo = max(t - window, 0)
        mean_diameter = sum(diameters[lo:t]) / (t - lo)
        x = slope * (mean_diameter - intercept)
        radio_prob = 1.0 / (1.0 + math.exp(-x))
        chemo_prob = 1.0 / (1.0 + math.exp(-x))
        chemo_prob_out[t] = chemo_prob
        radio_prob_out[t] = radio_prob

        # independent uniforms for the two treatments; drawn before the stop checks (as CT)
        current_chemo = 0.0
        if radio_rvs[t] < radio_prob:
            radio_app[t] = 1.0
            radio_dosage[t] = RADIO_AMOUNT_GY
        if chemo_rvs[t] < chemo_prob:
            chemo_app[t] = 1.0
            current_chemo = CHEMO_AMOUNT
        chemo_dosage[t] = chemo_dosage[t - 1] * CHEMO_DECAY + current_chemo

        # ref §1 "Death": above 1150.35 cm3, clamp and stop.
        if v > TUMOUR_DEATH_THRESHOLD:
            volume[t] = TUMOUR_DEATH_THRESHOLD
            death = True
            break
        # ref §1 "Recovery": U < exp(-V * 5.8e8); V <= 0 makes the right side >= 1 (NumPy: inf).
        if v <= 0.0 or recovery_rvs[t] < math.exp(-v * TUMOUR_CELL_DENSITY):
            volume[t] = 0.0
            recovery = True
            break
        diameters[t] = calc_diameter(v)

    death_flags = [0.0] * days
    recovery_flags = [0.0] * days
    death_flags[t] = 1.0 if death else 0.0
    recovery_flags[t] = 1.0 if recovery else 0.0
    return {
        "cancer_volume": np.array(volume),
        "chemo_dosage": np.array(chemo_dosage),
        "radio_dosage": np.array(radio_dosage),
        "chemo_application": np.array(chemo_app),
        "radio_application": np.array(radio_app),
        "chemo_probabilities": np.array(chemo_prob_out),
        "radio_probabilities": np.array(radio_prob_out),
        "death_flags": np.array(death_flags),
        "recovery_flags": np.array(recovery_flags),
        # CT: sequence_lengths[i] = int(t), t the last loop index (ref §1 "After a stop").
        "sequence_length": t,
        "stop_day": t if (death or recovery) else days,
        "death": death,
        "recovery": recovery,
    }


# --------------------------------------------------------------------------- a cohort
_DAY_KEYS = (
    "cancer_volume",
    "chemo_dosage",
    "radio_dosage",
    "chemo_application",
    "radio_application",
    "chemo_probabilities",
    "radio_probabilities",
    "death_flags",
    "recovery_flags",
)


def simulate(n: int, days: int, gamma: float, seed: int, window: int = 15) -> dict[str, np.ndarray]:
    """Draw ``n`` patients and simulate each for ``days`` days with one generator seeded ``seed``.

    Returns CT's outputs: day arrays of shape ``(n, days)``, per-patient ``sequence_lengths``,
    ``stop_day``, ``death``, ``recovery``, and the drawn parameters under ``params``.
    """
    rng = np.random.default_rng(seed)
    params = draw_params(n, rng)
    out = {key: np.zeros((n, days)) for key in _DAY_KEYS}
    seq = np.zeros(n, dtype=np.int64)
    stop = np.zeros(n, dtype=np.int64)
    death = np.zeros(n, dtype=bool)
    recovery = np.zeros(n, dtype=bool)
    for i in range(n):
        r = simulate_patient(patient(params, i), days, gamma, rng, window)
        for key in _DAY_KEYS:
            out[key][i] = r[key]
        seq[i] = r["sequence_length"]
        stop[i] = r["stop_day"]
        death[i] = r["death"]
        recovery[i] = r["recovery"]
    out.update(
        sequence_lengths=seq,
        stop_day=stop,
        death=death,
        recovery=recovery,
        patient_types=params["patient_types"],
        params=params,
    )
    return out
