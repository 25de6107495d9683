"""The verify stage: posterior inference, identifiability, calibration, treatment inference,
realism, causal consistency, negative controls and one verdict, for any ``InverseProblem``.

Two entry points, one per workflow rule:

- ``run_controls`` (once per release): proves the stage has power. A posterior trained on a
  perturbed simulator must fail calibration on the shipped one, and a simulator with each planted
  defect (``problem.DEFECTS``) must fail the gate. Cheap checks run first (causal, then realism
  against the shipped simulator, which plays the reference world); the posterior checks run for
  a defect the cheap ones did not catch, and always for ``non_identifiable``, whose target is the
  identifiability gate itself.
- ``verify_release`` (once per confounding strength): trains the neural posterior on fresh
  simulations under the release's policy, judges it on held-out simulations, applies it to the
  release patients, recovers latent classes and treatments, compares the release with the
  reference set, runs the causal checks and the over-confident-posterior control (free: the same
  posterior contracted), and combines everything, with the release-level controls, into the
  verdict: 'fail' when a gated check fails; otherwise 'inconclusive' when a negative control
  passed (or controls were switched off); otherwise 'pass'.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from oncobench.config import Config
from oncobench.inverse import diagnostics as dg
from oncobench.inverse import npe, realism
from oncobench.inverse.checks import Check, checks_frame, failed
from oncobench.inverse.problem import DEFECTS, PERTURBED, Draw, InverseProblem

log = logging.getLogger(__name__)

# Simulation keys: each names a disjoint range of fresh patient ids.
TRAIN_KEY, TEST_KEY, REFERENCE_KEY, CONTROL_TRAIN_KEY, CONTROL_RELEASE_KEY = 1, 2, 3, 4, 5
# Checks that judge a posterior's calibration (what the posterior controls must trip).
CALIBRATION_CHECKS = ("sbc", "hpd_coverage", "tarp")
# The defect whose designated catcher is the identifiability gate: its posterior checks always run.
POSTERIOR_DEFECT = "non_identifiable"


def npe_settings(cfg: Config) -> npe.NpeSettings:
    n = cfg.verify.npe
    return npe.NpeSettings(
        density_estimator=n.density_estimator, hidden_features=n.hidden_features, num_transforms=n.num_transforms,
        embedding_dim=n.embedding_dim, embedding_hidden=n.embedding_hidden, embedding_layers=n.embedding_layers,
        batch_size=n.batch_size, learning_rate=n.learning_rate, stop_after_epochs=n.stop_after_epochs, max_epochs=n.max_epochs,
        restarts=n.restarts, ensemble_tolerance=n.ensemble_tolerance,
    )


def thresholds(cfg: Config) -> dg.Thresholds:
    t = cfg.verify.thresholds
    return dg.Thresholds(
        contraction_min=t.contraction_min, sbc_alpha=t.sbc_alpha, dap_c2st_z=t.dap_c2st_z,
        coverage_levels=t.coverage_levels, coverage_slack=t.coverage_slack, coverage_z=t.coverage_z,
        tarp_atc_max=t.tarp_atc_max,
    )


def training_budget(cfg: Config, problem: InverseProblem) -> int:
    """Simulations that train the release posterior: ``verify.train_patients``, or when null,
    sized to the number of parameters D: max(5,000, 1,000 D) by default. The notes suggest 5k for
    D <= 5 and 20k-50k for D = 10-15; 1,000 per parameter keeps the NSCLC stage (D = 11) within
    its time budget, and SBC and HPD coverage judge, on every run, whether it was enough."""
    v = cfg.verify
    if v.train_patients is not None:
        return v.train_patients
    return max(v.min_train_patients, v.simulations_per_parameter * len(problem.parameters))


def _flat(x: torch.Tensor, drop_channels: tuple[int, ...] = ()) -> np.ndarray:
    keep = [c for c in range(x.shape[1]) if c not in drop_channels]
    return x[:, keep].reshape(x.shape[0], -1).numpy().astype(np.float64)


def _calibration_failures(checks: list[Check]) -> list[Check]:
    return [c for c in failed(checks) if c.check in CALIBRATION_CHECKS]


# --------------------------------------------------------------------------- controls
@dataclass
class ControlOutcome:
    control: str
    kind: str  # "posterior" or "simulator"
    caught_by: list[str] = field(default_factory=list)
    n_failed: int = 0
    stages_run: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        return "fail" if self.n_failed else "pass"


def controls_frame(outcomes: list[ControlOutcome]) -> pd.DataFrame:
    """One row per negative control (schema VerificationControl): each is expected to fail."""
    return pd.DataFrame(
        {
            "control": [o.control for o in outcomes],
            "kind": [o.kind for o in outcomes],
            "expected": "fail",
            "outcome": [o.outcome for o in outcomes],
            "n_failed": np.array([o.n_failed for o in outcomes], dtype=np.int64),
            "caught_by": ["; ".join(o.caught_by) for o in outcomes],
            "stages_run": [", ".join(o.stages_run) for o in outcomes],
            "seconds": np.array([o.seconds for o in outcomes], dtype=np.float64),
        }
    )


def _note(outcome: ControlOutcome, stage: str, checks: list[Check]) -> None:
    outcome.stages_run.append(stage)
    bad = failed(checks)
    outcome.n_failed += len(bad)
    outcome.caught_by += [c.reason() for c in bad]


def _posterior_checks(problem: InverseProblem, cfg: Config, train: Draw, test: Draw, *, seed: int, device: str) -> list[Check]:
    post = npe.train(train.theta, train.x, npe_settings(cfg), seed=seed, device=device)
    cal = dg.calibrate(
        post, test.theta, test.x, train.theta, problem.parameters, problem.identifiable, thresholds(cfg),
        n_samples=cfg.verify.posterior_samples, seed=seed,
    )
    return cal.checks


def _realism_checks(cfg: Config, release: Draw, reference: Draw, subject: str, *, seed: int) -> tuple[realism.Realism, list[Check]]:
    r = realism.c2st(
        release.summary, reference.summary, seed=seed, permutations=cfg.verify.realism_permutations,
        z=cfg.verify.thresholds.realism_z,
    )
    return r, r.checks(subject)


def run_controls(problem: InverseProblem, cfg: Config, *, n_release: int, device: str = "cpu") -> pd.DataFrame:
    """The release-level negative controls (module docstring); each row says how it failed.
    ``device``: where the posteriors train (simulation happens on the problem's device)."""
    seed = cfg.seed
    n_train = cfg.verify.controls.train_patients
    test = problem.simulate(cfg.verify.test_patients, key=TEST_KEY)
    out: list[ControlOutcome] = []

    start = time.perf_counter()
    o = ControlOutcome("perturbed_simulator_posterior", "posterior")
    perturbed = problem.simulate(n_train, key=CONTROL_TRAIN_KEY, defect=PERTURBED)
    o.stages_run.append("calibration")
    bad = _calibration_failures(_posterior_checks(problem, cfg, perturbed, test, seed=seed, device=device))
    o.n_failed, o.caught_by = len(bad), [c.reason() for c in bad]
    o.seconds = time.perf_counter() - start
    out.append(o)
    log.info("control %s: %s (%d failed checks, %.1f s)", o.control, o.outcome, o.n_failed, o.seconds)

    reference = problem.simulate(n_release, key=REFERENCE_KEY)
    for defect in DEFECTS:
        start = time.perf_counter()
        o = ControlOutcome(f"planted_defect:{defect}", "simulator")
        _note(o, "causal", problem.causal_checks(defect=defect))
        candidate = problem.simulate(n_release, key=CONTROL_RELEASE_KEY, defect=defect)
        _, checks = _realism_checks(cfg, candidate, reference, f"defect {defect} vs shipped simulator", seed=seed)
        _note(o, "realism", checks)
        if defect == POSTERIOR_DEFECT or not o.n_failed:
            train = problem.simulate(n_train, key=CONTROL_TRAIN_KEY, defect=defect)
            held = problem.simulate(cfg.verify.test_patients, key=TEST_KEY, defect=defect)
            _note(o, "posterior", _posterior_checks(problem, cfg, train, held, seed=seed, device=device))
        o.seconds = time.perf_counter() - start
        out.append(o)
        log.info("control %s: %s (%d failed checks, %.1f s)", o.control, o.outcome, o.n_failed, o.seconds)
    return controls_frame(out)


# --------------------------------------------------------------------------- release
@dataclass(frozen=True)
class StageResult:
    """The verify stage's tables for one confounding strength (schemas in oncobench.schemas)."""

    checks: pd.DataFrame
    parameters: pd.DataFrame
    ranks: pd.DataFrame
    coverage: pd.DataFrame
    tarp: pd.DataFrame
    realism: pd.DataFrame
    predictions: pd.DataFrame
    controls: pd.DataFrame
    verdict: pd.DataFrame
    recovery: dict[str, np.ndarray]  # per parameter: truth and posterior mean on held-out simulations
    seconds: dict[str, float]


def _ranks_frame(ranks: torch.Tensor, names: tuple[str, ...], n_samples: int) -> pd.DataFrame:
    b, d = ranks.shape
    return pd.DataFrame(
        {
            "parameter": np.repeat(np.array(names, dtype=object)[None, :], b, axis=0).reshape(-1),
            "test_index": np.repeat(np.arange(b, dtype=np.int64), d),
            "rank": ranks.numpy().astype(np.int64).reshape(-1),
            "n_samples": np.int64(n_samples),
        }
    )


def _predictions(patient_id: np.ndarray, theta: torch.Tensor, samples: torch.Tensor, names: tuple[str, ...]) -> pd.DataFrame:
    n, d = theta.shape
    return pd.DataFrame(
        {
            "patient_id": np.repeat(patient_id.astype(np.int64), d),
            "parameter": np.tile(np.array(names, dtype=object), n),
            "true_value": theta.double().numpy().reshape(-1),
            "predicted_mean": samples.mean(dim=0).double().numpy().reshape(-1),
            "predicted_sd": samples.std(dim=0).double().numpy().reshape(-1),
        }
    )


def verdict_frame(checks: list[Check], controls: pd.DataFrame | None) -> pd.DataFrame:
    """'fail' if a gated check failed; else 'inconclusive' if a negative control passed or none
    ran; else 'pass'. ``reasons`` names every failed check and every control that passed."""
    gated = [c for c in checks if c.op is not None]
    bad = failed(checks)
    reasons = [c.reason() for c in bad]
    if controls is None or controls.empty:
        weak = ["negative controls did not run (verify.controls.enabled is false): the stage's power is unproven"]
    else:
        weak = [f"negative control {r.control} passed: the stage lacks power to catch it" for r in controls.itertuples() if r.outcome != "fail"]
    verdict = "fail" if bad else ("inconclusive" if weak else "pass")
    return pd.DataFrame(
        {
            "verdict": [verdict],
            "n_checks": np.array([len(gated)], dtype=np.int64),
            "n_failed": np.array([len(bad)], dtype=np.int64),
            "reasons": ["; ".join(reasons + weak)],
        }
    )


def verify_release(
    problem: InverseProblem,
    cfg: Config,
    release: Draw,
    patient_id: np.ndarray,
    *,
    reference: Draw | None,
    controls: pd.DataFrame | None,
    device: str = "cpu",
) -> StageResult:
    """Verify one release branch (module docstring). ``release`` is the encoded release cohort,
    ``reference`` the realism reference (None: an independent simulation of the same size),
    ``controls`` the release-level control table (None: controls disabled), ``device`` where the
    posterior trains."""
    seed = cfg.seed
    th = thresholds(cfg)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    train = problem.simulate(training_budget(cfg, problem), key=TRAIN_KEY)
    test = problem.simulate(cfg.verify.test_patients, key=TEST_KEY)
    seconds["simulate"] = time.perf_counter() - t

    t = time.perf_counter()
    post = npe.train(train.theta, train.x, npe_settings(cfg), seed=seed, device=device)
    seconds["train"] = time.perf_counter() - t
    log.info("NPE: %d simulations, %d epochs, %.1f s", post.simulations, post.epochs, post.train_seconds)
    t = time.perf_counter()
    cal = dg.calibrate(
        post, test.theta, test.x, train.theta, problem.parameters, problem.identifiable, th,
        n_samples=cfg.verify.posterior_samples, seed=seed,
    )
    checks = list(cal.checks)
    checks.append(Check("npe", "training", "simulations", float(post.simulations)))
    checks.append(Check("npe", "training", "epochs", float(post.epochs)))
    checks.append(Check("npe", "training", "ensemble_members", float(len(post.members))))
    seconds["calibration"] = time.perf_counter() - t

    # The release patients: posterior means (recovery on the release, reported) and classes.
    t = time.perf_counter()
    torch.manual_seed(seed)
    rel_samples = post.sample(min(cfg.verify.posterior_samples, 200), release.x)
    predictions = _predictions(patient_id, release.theta, rel_samples, problem.parameters)
    if torch.isfinite(release.theta).all():
        rel = dg.recovery(release.theta, rel_samples, train.theta, problem.parameters)
        for row in rel.itertuples():
            checks.append(Check("release_recovery", row.parameter, "r2", float(row.r2)))
            checks.append(Check("release_recovery", row.parameter, "z_sd", float(row.z_sd)))
    x_train, x_release = _flat(train.x), _flat(release.x)
    if problem.label_name is not None and train.label is not None and release.label is not None:
        lab = realism.recover_class(
            problem.label_name, problem.label_classes, x_train, train.label.numpy(), x_release, release.label.numpy(), seed=seed
        )
        checks += lab.checks("latent_class", gated=problem.label_identifiable)
    drop = problem.treatment_channels
    trt = realism.recover_class(
        "treatment", problem.treatment_classes, _flat(train.x, drop), train.treatment.numpy(),
        _flat(release.x, drop), release.treatment.numpy(), seed=seed,
    )
    checks += trt.checks("treatment_inference", gated=True)
    seconds["release_inference"] = time.perf_counter() - t

    t = time.perf_counter()
    if reference is None:
        reference = problem.simulate(len(release), key=REFERENCE_KEY)
        subject = "release vs independent simulation"
    else:
        subject = "release vs reference data"
    real, real_checks = _realism_checks(cfg, release, reference, subject, seed=seed)
    checks += real_checks
    seconds["realism"] = time.perf_counter() - t

    t = time.perf_counter()
    checks += problem.causal_checks()
    seconds["causal"] = time.perf_counter() - t

    # The over-confident control costs nothing here: the same posterior, contracted.
    t = time.perf_counter()
    shrunk = dg.calibrate(
        npe.Shrunk(post, cfg.verify.controls.shrink_factor), test.theta, test.x, train.theta, problem.parameters,
        problem.identifiable, th, n_samples=cfg.verify.posterior_samples, seed=seed,
    )
    bad = _calibration_failures(shrunk.checks)
    over = ControlOutcome("overconfident_posterior", "posterior", [c.reason() for c in bad], len(bad), ["calibration"])
    over.seconds = time.perf_counter() - t
    all_controls = None
    if cfg.verify.controls.enabled:
        all_controls = pd.concat([controls_frame([over]), controls], ignore_index=True) if controls is not None else controls_frame([over])
    seconds["controls"] = over.seconds

    coverage = cal.coverage.assign(posterior="npe")
    coverage = pd.concat([coverage, shrunk.coverage.assign(posterior="overconfident_control")], ignore_index=True)
    return StageResult(
        checks=checks_frame(checks),
        parameters=cal.parameters.assign(identifiable_required=[p in problem.identifiable for p in problem.parameters]),
        ranks=_ranks_frame(cal.ranks, problem.parameters, cfg.verify.posterior_samples),
        coverage=coverage,
        tarp=cal.tarp,
        realism=real.frame(subject),
        predictions=predictions,
        controls=all_controls if all_controls is not None else controls_frame([]),
        verdict=verdict_frame(checks, all_controls),
        recovery={
            name: np.stack([test.theta[:, j].double().numpy(), cal.samples[:, :, j].mean(dim=0).double().numpy()])
            for j, name in enumerate(problem.parameters)
        },
        seconds=seconds,
    )


__all__ = [
    "CALIBRATION_CHECKS", "ControlOutcome", "StageResult", "controls_frame", "npe_settings", "run_controls",
    "thresholds", "verdict_frame", "verify_release",
]
