"""Shared fixtures: one seed, tiny configs, and the markers' skip rules."""

from __future__ import annotations

import pytest
import torch

from oncobench.config import Config, load_config

SEED = 20171


@pytest.fixture
def seed() -> int:
    return SEED


def tiny_config(**overrides) -> Config:
    """A config small enough for unit tests; ``overrides`` are nested dicts merged on top."""
    base = {
        "seed": SEED,
        "model": "geng2017",
        "cohort": {"n_patients": 60, "shards": 2},
        "simulation": {"days": 30},
        "policy": {"gamma": [2]},
        "counterfactuals": {"horizons_days": [5, 29], "tau_max": 3, "test_fraction": 0.5},
        "verify": {"train_patients": 200},
        "evaluate": {"bootstrap": 20, "horizon_days": 29, "factual_model": {"epochs": 1}},
        "device": "cpu",
    }
    from oncobench.config import _deep_merge

    return load_config(overrides=_deep_merge(base, overrides))


@pytest.fixture
def tiny_cfg() -> Config:
    return tiny_config()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
