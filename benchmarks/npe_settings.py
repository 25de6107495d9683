"""Which NPE settings calibrate a model's verify posterior: train and judge, one setting per row.

    python benchmarks/npe_settings.py '{}' '{"ensemble_tolerance": 0.5}' '{"restarts": 3, "ensemble_tolerance": 0.5}'
    python benchmarks/npe_settings.py --config config/geng2017.yaml --gamma 4 '{"n": 8000}'

Each argument is a JSON object of ``npe.NpeSettings`` fields that replace the config's
``verify.npe`` (``"n"``: training simulations, default the verify job's budget, 11,000 for the
NSCLC model). Every row trains on the first ``n`` of the same simulations and is judged on the
same held-out ones, with the keys and seed of the verify job (``stage.TRAIN_KEY``,
``stage.TEST_KEY``, ``cfg.seed``), so a row differs from the verify job's calibration checks only
by the settings. It prints the failed checks and, per parameter, contraction, z-score mean and
SD, R² and the SBC KS p-value. The simulations are made once per invocation (about a minute for
22,000 NSCLC patients), so give every setting to compare in one call. Not a timing benchmark: training seconds are printed for orientation only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from oncobench.config import load_config
from oncobench.inverse import diagnostics as dg
from oncobench.inverse import npe, problem_for, stage
from oncobench.inverse.checks import failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="JSON objects of NpeSettings fields (and n)")
    ap.add_argument("--config", default=None, help="config file (default: the embedded default config)")
    ap.add_argument("--gamma", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    problem = problem_for(cfg, args.gamma, torch.device("cpu"))
    specs = [json.loads(spec) for spec in args.settings]
    budget = stage.training_budget(cfg, problem)
    most = max(int(f.get("n", budget)) for f in specs)
    train = problem.simulate(most, key=stage.TRAIN_KEY)  # the first n of these are the n-patient set
    test = problem.simulate(cfg.verify.test_patients, key=stage.TEST_KEY)
    th = stage.thresholds(cfg)
    for spec, fields in zip(args.settings, specs):
        n = int(fields.pop("n", budget))
        settings = dataclasses.replace(stage.npe_settings(cfg), **fields)
        t = time.perf_counter()
        post = npe.train(train.theta[:n], train.x[:n], settings, seed=cfg.seed)
        seconds = time.perf_counter() - t
        cal = dg.calibrate(
            post, test.theta, test.x, train.theta[:n], problem.parameters, problem.identifiable, th,
            n_samples=cfg.verify.posterior_samples, seed=cfg.seed,
        )
        bad = failed(cal.checks)
        losses = ", ".join(f"{v:.3f}" for v in post.validation_losses)
        print(f"== {spec}: {n} simulations, train {seconds:.0f} s, members {len(post.members)} "
              f"(validation losses {losses}), {len(bad)} checks failed")
        for c in bad:
            print("   ", c.reason())
        cols = ["parameter", "contraction", "z_mean", "z_sd", "r2", "sbc_ks_p", "dap_c2st"]
        print(cal.parameters[[c for c in cols if c in cal.parameters.columns]].to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
