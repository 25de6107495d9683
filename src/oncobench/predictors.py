"""Models the evaluate stage scores: the plug-in contract, its loader, and the built-in models.

Plug-in contract
================

A model is made by a factory named in the config (``evaluate.models``)::

    evaluate:
      models:
        - name: my_model
          import: "mypkg.models:make_model"   # module path ':' factory
          options: {hidden_units: 32}

The factory is called once per confounding strength as ``factory(options, context)`` with
``options`` (a plain dict, the config's ``options``) and a :class:`ModelContext` holding

* ``train``: the factual, confounded :class:`oncobench.schemas.Trajectory` rows of the
  training patients (never a test patient);
* ``cohort``: the observable covariates of those patients (columns ``COVARIATE_COLUMNS`` of
  the Cohort table; the mechanistic parameters are the ground truth and are withheld);
* ``regimens``: regimen name -> :class:`RegimenPlan`, boolean chemo/radio masks over days
  ``0 .. days-1``;
* ``days``, ``seed``, ``horizon_days`` and the two treatment costs of the utility below,
  and the torch ``device`` to train on.

The returned object implements either method or both:

``predict_volume(start, chemo_plan, radio_plan) -> np.ndarray``
    ``start`` is a DataFrame of n rows with columns ``patient_id``, ``patient_type``, ``day``,
    ``volume_cm3`` (the volume on ``day``) and ``chemo_concentration_prev`` (the chemo
    concentration of the day before, model units). ``chemo_plan`` and ``radio_plan`` are bool
    arrays (n, tau): the treatments given on days ``day .. day+tau-1``. Return the predicted
    volumes (cm3) on days ``day+1 .. day+tau`` as a finite float array of shape (n, tau).
    A volume of 1150.35 cm3 (13 cm diameter) or more means death, 0 recovery; after either
    the volume stays put and no further treatment is given. Models with this method are
    scored on the one-step and tau-step counterfactual tasks.

``recommend(patients, regimens) -> Sequence[str]``
    ``patients`` holds the test patients' covariates (``COVARIATE_COLUMNS``), ``regimens`` the
    regimen names; return one regimen name per patient, in row order. A model without this
    method recommends, per patient, the regimen of highest *predicted* utility: its
    ``predict_volume`` is asked for the plan of each regimen from day 0 (start volume the
    initial volume, no prior chemo) to ``horizon_days``.

Utility of a regimen for a patient (cm3; higher is better)::

    -volume on horizon_days - cost_per_chemo_dose_cm3 * chemo doses given before horizon_days
                            - cost_per_radio_fraction_cm3 * radio fractions given before it

Every error a plug-in causes (it cannot be imported, its factory or a method raises, an
output has the wrong shape, is not finite, or names an unknown regimen) becomes one
:class:`ModelError` line that names the model.

Built-in models
===============

* ``oracle``: the simulator itself, with each patient's true parameters and noise (replicate
  0): it reproduces the volume truth exactly, and recommends from the true outcomes.
* ``always_<regimen>``: the fixed policy giving every patient that regimen.
* ``factual_mlp``: a small MLP fitted on the factual (confounded) transitions only; the
  naive baseline whose factual-vs-counterfactual gap the benchmark exists to expose.
"""

from __future__ import annotations

import importlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import nn

from oncobench import cohort as cohort_mod
from oncobench import engine
from oncobench.config import ModelSpec
from oncobench.models import geng2017 as g

# Observable patient covariates handed to models; the mechanistic parameters stay hidden.
COVARIATE_COLUMNS = ("patient_id", "stage", "patient_type", "difficulty_tier", "initial_diameter_cm", "initial_volume_cm3")
START_COLUMNS = ("patient_id", "patient_type", "day", "volume_cm3", "chemo_concentration_prev")
PATIENT_TYPES = (1, 2, 3)
# factual_mlp optimiser: Adam with a one-cycle schedule peaking at this rate.
MLP_BATCH_ROWS = 1024
MLP_LEARNING_RATE = 5e-3


class ModelError(ValueError):
    """A model (usually a user plug-in) failed; the one-line message names the model."""


@dataclass(frozen=True)
class RegimenPlan:
    """One regimen as boolean dosing masks over days ``0 .. days-1``."""

    chemo: np.ndarray
    radio: np.ndarray


@dataclass(frozen=True)
class ModelContext:
    """What a model factory may use: factual training data and the task's definition."""

    train: pd.DataFrame
    cohort: pd.DataFrame
    regimens: Mapping[str, RegimenPlan]
    days: int
    seed: int
    horizon_days: int
    cost_per_chemo_dose_cm3: float
    cost_per_radio_fraction_cm3: float
    device: torch.device


@runtime_checkable
class VolumePredictor(Protocol):
    def predict_volume(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Recommender(Protocol):
    def recommend(self, patients: pd.DataFrame, regimens: list[str]) -> Sequence[str]: ...


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- checked calls
class CheckedModel:
    """A model behind the contract's checks: every failure becomes one :class:`ModelError`.

    Args:
        name: the model's name in the metric table.
        model: the object the factory returned.
        context: the :class:`ModelContext` (regimen plans, horizon, costs for the default
            recommendation).
    """

    def __init__(self, name: str, model: Any, context: ModelContext) -> None:
        self.name = name
        self.model = model
        self.context = context
        self.can_predict = callable(getattr(model, "predict_volume", None))
        self._has_recommend = callable(getattr(model, "recommend", None))
        if not (self.can_predict or self._has_recommend):
            raise ModelError(
                f"model '{name}': {type(model).__name__} has neither predict_volume nor recommend; "
                "expected at least one (see oncobench.predictors)"
            )

    def predict_volume(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray:
        """Predicted volumes (n, tau) float64, checked for shape and finiteness."""
        n, tau = chemo_plan.shape
        if n == 0:
            return np.zeros((0, tau))
        start = start.loc[:, list(START_COLUMNS)].reset_index(drop=True)
        try:
            out = self.model.predict_volume(start, chemo_plan.copy(), radio_plan.copy())
        except Exception as exc:  # noqa: BLE001 - any plug-in failure is reported in one line
            raise ModelError(f"model '{self.name}' predict_volume raised {_one_line(exc)}") from exc
        try:
            arr = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelError(
                f"model '{self.name}' predict_volume returned {type(out).__name__}; expected a float array of shape ({n}, {tau})"
            ) from None
        if arr.shape != (n, tau):
            raise ModelError(
                f"model '{self.name}' predict_volume returned shape {arr.shape} for {n} rows x {tau} days; expected ({n}, {tau})"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ModelError(
                f"model '{self.name}' predict_volume returned {int(bad.sum())} non-finite value(s) of {arr.size}; expected finite volumes in cm3"
            )
        return arr

    def recommend(self, patients: pd.DataFrame, regimens: Sequence[str]) -> np.ndarray:
        """Index into ``regimens`` of the regimen chosen for each patient (int64, (n,))."""
        regimens = list(regimens)
        if not self._has_recommend:
            return predicted_utility(self, patients, regimens).argmax(axis=1)
        patients = patients.loc[:, list(COVARIATE_COLUMNS)].reset_index(drop=True)
        try:
            out = self.model.recommend(patients, list(regimens))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"model '{self.name}' recommend raised {_one_line(exc)}") from exc
        return recommendation_indices(self.name, out, patients, regimens)


def recommendation_indices(name: str, out: Any, patients: pd.DataFrame, regimens: list[str]) -> np.ndarray:
    """Check a plug-in's ``recommend`` answer (one known regimen name per patient); return the
    regimens' positions, or raise one :class:`ModelError` line naming the model and the row."""
    n = len(patients)
    if isinstance(out, str) or not hasattr(out, "__len__"):
        raise ModelError(f"model '{name}' recommend returned {type(out).__name__}; expected a sequence of {n} regimen names")
    names = list(out)
    if len(names) != n:
        raise ModelError(f"model '{name}' recommend returned {len(names)} names for {n} patients; expected one per patient")
    index = {r: i for i, r in enumerate(regimens)}
    chosen = np.empty(n, dtype=np.int64)
    for row, value in enumerate(names):
        i = index.get(value) if isinstance(value, str) else None
        if i is None:
            raise ModelError(
                f"model '{name}' recommend returned unknown regimen {value!r} for patient "
                f"{patients['patient_id'].iat[row]}; expected one of {regimens}"
            )
        chosen[row] = i
    return chosen


def predicted_utility(model: CheckedModel, patients: pd.DataFrame, regimens: Sequence[str]) -> np.ndarray:
    """Utility (cm3, (n_patients, n_regimens)) of each regimen as ``model`` predicts it.

    Each regimen's plan runs from day 0 (initial volume, no prior chemo) to the horizon. A dose
    counts towards the cost only while the predicted course is alive (volume in (0, 1150.35)),
    as in the simulator, which gives no treatment after death or recovery.
    """
    ctx = model.context
    h = ctx.horizon_days
    n, r = len(patients), len(regimens)
    chemo = np.stack([ctx.regimens[name].chemo[:h] for name in regimens])  # (r, h)
    radio = np.stack([ctx.regimens[name].radio[:h] for name in regimens])
    start = pd.DataFrame(
        {
            "patient_id": np.repeat(patients["patient_id"].to_numpy(), r),
            "patient_type": np.repeat(patients["patient_type"].to_numpy(), r),
            "day": np.zeros(n * r, dtype=np.int64),
            "volume_cm3": np.repeat(patients["initial_volume_cm3"].to_numpy(np.float64), r),
            "chemo_concentration_prev": np.zeros(n * r),
        }
    )
    plan_c = np.tile(chemo, (n, 1))
    plan_r = np.tile(radio, (n, 1))
    vol = model.predict_volume(start, plan_c, plan_r)  # volumes on days 1..h
    in_range = (vol > 0) & (vol < g.DEATH_VOLUME_CM3)
    # alive on day d <=> volumes of days 1..d all in range; day 0 always
    alive = np.concatenate([np.ones((n * r, 1), dtype=bool), np.cumprod(in_range[:, : h - 1], axis=1).astype(bool)], axis=1)
    chemo_doses = (plan_c & alive).sum(axis=1)
    radio_fractions = (plan_r & alive).sum(axis=1)
    utility = -vol[:, h - 1] - ctx.cost_per_chemo_dose_cm3 * chemo_doses - ctx.cost_per_radio_fraction_cm3 * radio_fractions
    return utility.reshape(n, r)


# --------------------------------------------------------------------------- plug-in loading
def load_factory(spec: ModelSpec, index: int) -> Callable[..., Any]:
    """Import ``spec.import_path`` ('module:factory'); failures name the config entry."""
    where = f"evaluate.models[{index}] '{spec.name}'"
    module_name, sep, attr = spec.import_path.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"{where}: import {spec.import_path!r} is not 'module.path:factory'")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except Exception as exc:  # noqa: BLE001 - ImportError, AttributeError, or the module raising
        raise ModelError(f"{where}: cannot import {spec.import_path!r}: {_one_line(exc)}") from None
    if not callable(factory):
        raise ModelError(f"{where}: {spec.import_path!r} is a {type(factory).__name__}, not a callable factory")
    return factory


def load_plugin(spec: ModelSpec, index: int, context: ModelContext) -> CheckedModel:
    """Import, build and wrap the user model ``spec`` (entry ``index`` of evaluate.models)."""
    factory = load_factory(spec, index)
    try:
        model = factory(dict(spec.options), context)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model '{spec.name}' factory {spec.import_path!r} raised {_one_line(exc)}") from exc
    return CheckedModel(spec.name, model, context)


# --------------------------------------------------------------------------- built-ins
class Oracle:
    """The true simulator: each patient's own parameters, seed and noise (replicate 0).

    Args:
        cohort: Cohort table (true parameters) covering every patient it will be asked about.
        utilities: true utility per patient (index: patient_id) and regimen (columns).
        seed, compat: the run's seed and ``simulation.compat``.
        device: torch device for the simulation.
    """

    def __init__(self, cohort: pd.DataFrame, utilities: pd.DataFrame, *, seed: int, compat: str, device: torch.device) -> None:
        self._index = pd.Index(cohort["patient_id"].to_numpy())
        self._cohort = cohort_mod.from_frame(cohort, device=device)
        self._utilities = utilities
        self.seed, self.compat, self.device = seed, compat, device

    def _rows(self, patient_id: np.ndarray) -> torch.Tensor:
        idx = self._index.get_indexer(patient_id)
        if (idx < 0).any():
            raise ValueError(f"no true parameters for patient(s) {sorted(set(patient_id[idx < 0].tolist()))[:5]}")
        return torch.as_tensor(idx, device=self.device)

    def predict_volume(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray:
        dev = self.device
        vol, _ = engine.roll_forward(
            self._cohort.take(self._rows(start["patient_id"].to_numpy())),
            seed=self.seed,
            compat=self.compat,
            start_day=torch.as_tensor(start["day"].to_numpy(np.int64), device=dev),
            volume=torch.as_tensor(start["volume_cm3"].to_numpy(np.float64), device=dev),
            conc_prev=torch.as_tensor(start["chemo_concentration_prev"].to_numpy(np.float64), device=dev),
            chemo_plan=torch.as_tensor(chemo_plan, device=dev),
            radio_plan=torch.as_tensor(radio_plan, device=dev),
            replicate=0,
        )
        return vol.cpu().numpy()

    def recommend(self, patients: pd.DataFrame, regimens: list[str]) -> list[str]:
        u = self._utilities.reindex(index=patients["patient_id"].to_numpy(), columns=regimens).to_numpy()
        return [regimens[i] for i in u.argmax(axis=1)]


class FixedRegimen:
    """The policy that gives every patient one regimen."""

    def __init__(self, regimen: str) -> None:
        self.regimen = regimen

    def recommend(self, patients: pd.DataFrame, regimens: list[str]) -> list[str]:
        return [self.regimen] * len(patients)


def factual_transitions(train: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """Day-to-day factual transitions t -> t+1 of the training patients.

    Only consecutive recorded days of a patient alive on both days are kept: a transition
    into death or recovery sets the volume to a threshold (1150.35 or 0 cm3) rather than
    following the dynamics, so the rollout handles stops explicitly instead. The previous
    day's concentration follows from the dosing rule, ``C_{t-1} = (C_t - 5 A_t) / 0.5``.

    Returns:
        columns patient_id, patient_type, volume_cm3 (V_t), chemo_concentration_prev
        (C_{t-1}), chemo, radio (treatment on day t), volume_next_cm3 (V_{t+1}).
    """
    df = train.sort_values(["patient_id", "day"], kind="stable")
    pid = df["patient_id"].to_numpy()
    day = df["day"].to_numpy()
    alive = (df["status"].to_numpy() == "alive") & (df["volume_cm3"].to_numpy() > 0)
    ok = (pid[1:] == pid[:-1]) & (day[1:] == day[:-1] + 1) & alive[:-1] & alive[1:]
    src = np.nonzero(ok)[0]
    chemo = df["chemo_given"].to_numpy()[src]
    conc = df["chemo_concentration"].to_numpy()[src]
    conc_prev = np.maximum((conc - g.CHEMO_DOSE_UNITS * chemo) / g.CHEMO_DECAY_PER_DAY, 0.0)
    ptype = pd.Series(cohort["patient_type"].to_numpy(), index=cohort["patient_id"].to_numpy())
    return pd.DataFrame(
        {
            "patient_id": pid[src],
            "patient_type": ptype.reindex(pid[src]).to_numpy(),
            "volume_cm3": df["volume_cm3"].to_numpy()[src],
            "chemo_concentration_prev": conc_prev,
            "chemo": chemo,
            "radio": df["radio_given"].to_numpy()[src],
            "volume_next_cm3": df["volume_cm3"].to_numpy()[src + 1],
        }
    )


class FactualMLP:
    """MLP for ``log(V_{t+1}/V_t)`` from ``[log V_t, C_{t-1}, chemo_t, radio_t, one-hot type]``.

    Fitted on factual transitions only (:func:`factual_transitions`), so under a confounded
    policy it has seen few treated small tumours and few untreated large ones. Multi-day
    predictions roll it forward on its own output; the concentration is carried by the
    dosing rule a clinic knows, ``C_t = 0.5 C_{t-1} + 5 chemo_t`` (half-life 1 day, 5 units
    per dose). Death (>= 1150.35 cm3) and recovery (fewer than one cell) are absorbing, so
    predictions lie in [0, 1150.35] cm3 and match the simulator's stop rules.
    """

    def __init__(self, net: nn.Module, scale: dict[str, float], device: torch.device) -> None:
        self.net = net.eval()
        self.scale = scale
        self.device = device

    @classmethod
    def fit(cls, context: ModelContext, *, epochs: int, hidden_units: int, max_train_rows: int) -> "FactualMLP":
        """Train on the factual transitions of ``context.train`` (seeded by ``context.seed``)."""
        tr = factual_transitions(context.train, context.cohort)
        if len(tr) < 2:
            raise ModelError(
                "model 'factual_mlp': fewer than 2 consecutive-day factual transitions among the training patients; "
                "expected simulation.record_every = 1 and training patients"
            )
        gen = np.random.default_rng(np.random.SeedSequence([context.seed, 0xFAC7]))
        if len(tr) > max_train_rows:
            tr = tr.iloc[np.sort(gen.choice(len(tr), size=max_train_rows, replace=False))]
        log_v = np.log(tr["volume_cm3"].to_numpy())
        y = np.log(tr["volume_next_cm3"].to_numpy()) - log_v
        scale = {
            "log_v_mean": float(log_v.mean()),
            "log_v_sd": float(log_v.std()) or 1.0,
            "y_mean": float(y.mean()),
            "y_sd": float(y.std()) or 1.0,
        }
        dev = context.device
        x = _features(
            torch.as_tensor(log_v, device=dev),
            torch.as_tensor(tr["chemo_concentration_prev"].to_numpy(np.float64), device=dev),
            torch.as_tensor(tr["chemo"].to_numpy(), device=dev),
            torch.as_tensor(tr["radio"].to_numpy(), device=dev),
            torch.as_tensor(tr["patient_type"].to_numpy(np.int64), device=dev),
            scale,
        )
        target = torch.as_tensor((y - scale["y_mean"]) / scale["y_sd"], dtype=torch.float32, device=dev).unsqueeze(1)
        with torch.random.fork_rng(devices=[]):  # the layers are initialised on the CPU
            torch.manual_seed(context.seed)
            net = nn.Sequential(
                nn.Linear(x.shape[1], hidden_units), nn.SiLU(),
                nn.Linear(hidden_units, hidden_units), nn.SiLU(),
                nn.Linear(hidden_units, 1),
            ).to(dev)
        batch = MLP_BATCH_ROWS
        steps_per_epoch = math.ceil(len(x) / batch)
        opt = torch.optim.Adam(net.parameters(), lr=MLP_LEARNING_RATE)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MLP_LEARNING_RATE, total_steps=epochs * steps_per_epoch)
        perm_gen = torch.Generator().manual_seed(context.seed)
        net.train()
        with _one_cpu_thread(dev):
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=perm_gen).to(dev)
                for lo in range(0, len(x), batch):
                    idx = order[lo : lo + batch]
                    loss = torch.mean((net(x[idx]) - target[idx]) ** 2)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
        return cls(net, scale, dev)

    @torch.no_grad()
    def predict_volume(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray:
        with _one_cpu_thread(self.device):
            return self._rollout(start, chemo_plan, radio_plan)

    def _rollout(self, start: pd.DataFrame, chemo_plan: np.ndarray, radio_plan: np.ndarray) -> np.ndarray:
        dev = self.device
        v = torch.as_tensor(start["volume_cm3"].to_numpy(np.float64), device=dev).clone()
        conc = torch.as_tensor(start["chemo_concentration_prev"].to_numpy(np.float64), device=dev).clone()
        ptype = torch.as_tensor(start["patient_type"].to_numpy(np.int64), device=dev)
        chemo_all = torch.as_tensor(chemo_plan, device=dev)
        radio_all = torch.as_tensor(radio_plan, device=dev)
        n, tau = chemo_plan.shape
        out = torch.empty((n, tau), dtype=torch.float64, device=dev)
        stopped = (v <= 0) | (v >= g.DEATH_VOLUME_CM3)
        v = v.clamp(0.0, g.DEATH_VOLUME_CM3)
        for k in range(tau):
            chemo, radio = chemo_all[:, k], radio_all[:, k]
            log_v = torch.log(v.clamp_min(1e-300))
            x = _features(log_v, conc, chemo, radio, ptype, self.scale)
            step = self.net(x).squeeze(1).to(torch.float64) * self.scale["y_sd"] + self.scale["y_mean"]
            new = torch.exp(log_v + step)
            died = new >= g.DEATH_VOLUME_CM3
            recovered = new * g.CELLS_PER_CM3 < 1.0
            new = torch.where(died, torch.full_like(new, g.DEATH_VOLUME_CM3), torch.where(recovered, torch.zeros_like(new), new))
            v = torch.where(stopped, v, new)
            stopped = stopped | died | recovered
            conc = conc * g.CHEMO_DECAY_PER_DAY + g.CHEMO_DOSE_UNITS * chemo.to(torch.float64)
            out[:, k] = v
        return out.cpu().numpy()


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the MLP's small kernels on one CPU thread (restored afterwards).

    Its layers (a batch of 1024 x 64 units) are too small to split: when other processes
    share the cores, idle intra-op threads spin and a step costs tens of times more than on
    one thread.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _features(
    log_v: torch.Tensor, conc_prev: torch.Tensor, chemo: torch.Tensor, radio: torch.Tensor, ptype: torch.Tensor, scale: Mapping[str, float]
) -> torch.Tensor:
    onehot = torch.stack([(ptype == t) for t in PATIENT_TYPES], dim=1).to(torch.float32)
    cols = [
        ((log_v - scale["log_v_mean"]) / scale["log_v_sd"]).to(torch.float32),
        (conc_prev / g.CHEMO_DOSE_UNITS).to(torch.float32),
        chemo.to(torch.float32),
        radio.to(torch.float32),
    ]
    return torch.cat([torch.stack(cols, dim=1), onehot], dim=1)


def builtin_models(
    *,
    context: ModelContext,
    test_cohort: pd.DataFrame,
    utilities: pd.DataFrame,
    compat: str,
    epochs: int,
    hidden_units: int,
    max_train_rows: int,
) -> dict[str, CheckedModel]:
    """``oracle``, ``factual_mlp`` and ``always_<regimen>`` for each configured regimen.

    Args:
        context: the context plug-ins get (factual_mlp trains on ``context.train``).
        test_cohort: Cohort rows (true parameters) of the test patients, for the oracle.
        utilities: true utility per test patient (index patient_id) x regimen (columns).
        compat: ``simulation.compat``.
        epochs, hidden_units, max_train_rows: ``evaluate.factual_model``.
    """
    models = {
        "oracle": CheckedModel(
            "oracle", Oracle(test_cohort, utilities, seed=context.seed, compat=compat, device=context.device), context
        ),
        "factual_mlp": CheckedModel(
            "factual_mlp",
            FactualMLP.fit(context, epochs=epochs, hidden_units=hidden_units, max_train_rows=max_train_rows),
            context,
        ),
    }
    for name in context.regimens:
        models[f"always_{name}"] = CheckedModel(f"always_{name}", FixedRegimen(name), context)
    return models


__all__ = [
    "COVARIATE_COLUMNS", "START_COLUMNS", "CheckedModel", "FactualMLP", "FixedRegimen", "ModelContext", "ModelError",
    "Oracle", "Recommender", "RegimenPlan", "VolumePredictor", "builtin_models", "factual_transitions",
    "load_factory", "load_plugin", "predicted_utility",
]
