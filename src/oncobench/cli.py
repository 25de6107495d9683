"""Command-line interface: one subcommand per workflow stage (``oncobench <stage> ...``).

Files are read and written here and in ``oncobench.io``; the science modules take and return
tensors, dataclasses and data frames. A user error (config, input file, plug-in model) ends
the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from oncobench.config import Config, ConfigError, load_config

log = logging.getLogger("oncobench")

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Config], None]]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Register a stage: ``setup`` adds its arguments, the decorated function runs it."""

    def deco(fn: Callable[[argparse.Namespace, Config], None]):
        _COMMANDS[name] = (setup, fn)
        return fn

    return deco


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def stamp_for(cfg: Config, **extra: object):
    from oncobench.io import Stamp

    return Stamp(config_hash=cfg.hash(), seed=cfg.seed, extra=tuple((k, str(v)) for k, v in sorted(extra.items())))


# --------------------------------------------------------------------------- cohort
def _cohort_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", type=int, required=True, help="shard index k in 0..cohort.shards-1")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (Cohort schema)")


@command("cohort", _cohort_args)
def _cohort(args: argparse.Namespace, cfg: Config) -> None:
    from oncobench import cohort, io, schemas

    if not 0 <= args.shard < cfg.cohort.shards:
        raise ConfigError(f"--shard {args.shard}: expected 0..{cfg.cohort.shards - 1} (cohort.shards = {cfg.cohort.shards})")
    ids = cohort.shard_patient_ids(cfg.cohort.n_patients, cfg.cohort.shards, args.shard)
    df = cohort.to_frame(cohort.draw(cfg.seed, ids))
    io.write_table(df, args.out, schemas.Cohort, stamp_for(cfg, shard=args.shard))
    log.info("cohort shard %d: %d patients -> %s", args.shard, len(df), args.out)


# --------------------------------------------------------------------------- simulate
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", type=Path, required=True, help="cohort shard Parquet")
    p.add_argument("--gamma", type=float, required=True, help="confounding strength (one of policy.gamma)")
    p.add_argument("--out", type=Path, required=True, help="output Parquet (Trajectory schema)")


@command("simulate", _simulate_args)
def _simulate(args: argparse.Namespace, cfg: Config) -> None:
    from oncobench import cohort, engine, io, schemas, trajectories

    _check_gamma(cfg, args.gamma)
    device = resolve_device(cfg.device)
    c = cohort.from_frame(io.read_table(args.cohort, schemas.Cohort))
    obs = engine.Observation(cfg.observation.scan_every_days, cfg.observation.diameter_cv)
    t0 = time.perf_counter()
    with io.ShardWriter(args.out, schemas.Trajectory, stamp_for(cfg, gamma=args.gamma, device=device)) as w:
        for frame in trajectories.simulate_frames(
            c, seed=cfg.seed, days=cfg.simulation.days, compat=cfg.simulation.compat, gamma=args.gamma,
            window_days=cfg.policy.window_days, observation=obs, record_every=cfg.simulation.record_every,
            chunk_patients=cfg.simulation.chunk_patients, device=device,
        ):
            w.write(frame)
    dt = time.perf_counter() - t0
    log.info(
        "simulate: %d patients x %d days on %s in %.2f s (%.0f patient-days/s incl. writing), %d rows -> %s",
        len(c), cfg.simulation.days, device, dt, len(c) * cfg.simulation.days / dt, w.rows, args.out,
    )


def _check_gamma(cfg: Config, gamma: float) -> None:
    if not any(abs(gamma - g) < 1e-12 for g in cfg.gammas):
        raise ConfigError(f"--gamma {gamma:g}: not one of policy.gamma {list(cfg.gammas)}")


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oncobench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"oncobench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (setup, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or name).strip().splitlines()[0] if fn.__doc__ else name)
        p.add_argument("--config", type=Path, default=None, help="YAML config (default: embedded defaults)")
        setup(p)
    return parser


def _version() -> str:
    from oncobench import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    from oncobench.io import ArtifactError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        _COMMANDS[args.command][1](args, cfg)
    except (ConfigError, ArtifactError) as exc:
        print(f"oncobench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
