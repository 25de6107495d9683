"""Counter-based random numbers: a draw is a pure function of its key.

Every random number oncobench uses is ``f(seed, stream, replicate, patient_id, day, slot)``,
computed with the SplitMix64 finaliser (Steele, Lea & Flood 2014, "Fast splittable
pseudorandom number generators") on int64 tensors. Integer multiplication in torch wraps
modulo 2**64 on CPU and CUDA alike, so the 64-bit words are the same bits on every device;
the floats derived from them (uniforms, normals) differ at most in the last ulp where the
device's ``log``/``cos`` differ.

Consequences the rest of the package relies on:

* a patient's draws do not depend on how many other patients exist, on shard or batch
  boundaries, or on the device;
* the counterfactual arms of one patient use the same key, hence the same noise
  (common random numbers), so arm differences are treatment effects.
"""

from __future__ import annotations

import enum
import math

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


class Stream(enum.IntEnum):
    """Named random streams. Values are part of the on-disk contract: never renumber."""

    STAGE = 1
    DIAMETER = 2
    ALPHA_RHO = 3
    CHEMO_SENSITIVITY = 4
    PATIENT_TYPE = 5
    PROCESS_NOISE = 10
    POLICY = 11
    RECOVERY = 13
    OBSERVATION = 14
    SPLIT = 20
    # NSCLC baseline covariates (nsclc/population.py): 40-59.
    NSCLC_SEX = 40
    NSCLC_SMOKING = 41
    NSCLC_HISTOLOGY = 42
    NSCLC_DRIVER = 43
    NSCLC_AGE = 44
    NSCLC_ECOG = 45
    NSCLC_STAGE = 46
    NSCLC_BODY_SIZE = 47
    NSCLC_CREATININE = 48
    NSCLC_PDL1 = 49


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def mix64_int(value: int) -> int:
    """SplitMix64 finaliser on a Python int (the reference the tensor version is tested against)."""
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _srl(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 words (torch's ``>>`` is arithmetic)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


_M1_SIGNED = _signed(_M1)
_M2_SIGNED = _signed(_M2)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor, bit-identical to :func:`mix64_int`."""
    z = z ^ _srl(z, 30)
    z = z * _M1_SIGNED
    z = z ^ _srl(z, 27)
    z = z * _M2_SIGNED
    return z ^ _srl(z, 31)


def stream_key(seed: int, stream: Stream, replicate: int = 0) -> int:
    """Scalar key of one (seed, stream, replicate) triple, as a signed int64."""
    z = mix64_int(seed * _GOLDEN + 0x632BE59BD9B4E019)
    z = mix64_int(z ^ (int(stream) * _GOLDEN))
    z = mix64_int(z ^ ((replicate + 1) * 0xD1B54A32D192ED03))
    return _signed(z)


def patient_keys(
    seed: int, stream: Stream, patient_id: torch.Tensor, replicate: int | torch.Tensor = 0
) -> torch.Tensor:
    """Per-patient int64 keys of one stream; ``patient_id`` is an int64 tensor.

    ``replicate`` may be a tensor broadcastable to ``patient_id`` (one key per patient x
    replicate row).
    """
    if isinstance(replicate, torch.Tensor):
        base = torch.tensor(
            [stream_key(seed, stream, r) for r in range(int(replicate.max().item()) + 1)],
            dtype=torch.int64,
            device=patient_id.device,
        )[replicate.long()]
    else:
        base = torch.full_like(patient_id, stream_key(seed, stream, replicate), dtype=torch.int64)
    return mix64(base ^ mix64(patient_id.to(torch.int64) * _signed(_GOLDEN)))


Counter = int | torch.Tensor


def _counter_word(counter: Counter) -> int | torch.Tensor:
    if isinstance(counter, torch.Tensor):
        return mix64((counter.to(torch.int64) + 1) * _signed(_GOLDEN))
    return _signed(mix64_int((counter + 1) * _GOLDEN))


def bits(keys: torch.Tensor, counter: Counter) -> torch.Tensor:
    """64 random bits per key for a counter (a day, an attempt, a slot).

    ``counter`` is an int, or an int64 tensor broadcastable to ``keys`` (one counter per row,
    e.g. rows that start on different days); both give the same bits for the same value.
    A stream uses either :func:`uniform` or :func:`normal`, never both, so their counters
    never collide.
    """
    return mix64(keys ^ _counter_word(counter))


def uniform(keys: torch.Tensor, counter: Counter, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniform draws in the open interval (0, 1), one per key, from the top 53 bits."""
    top = _srl(bits(keys, counter), 11)
    return ((top.to(torch.float64) + 0.5) * 2.0**-53).to(dtype)


def uniform_pair(keys: torch.Tensor, counter: Counter) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent float64 uniforms in (0, 1) with 2**-32 resolution from one 64-bit word.

    Half the hashing of two :func:`uniform` calls; the resolution is ample for Bernoulli
    draws and for Box-Muller normals (the tail is cut at 6.7 SD).
    """
    word = bits(keys, counter)
    hi = _srl(word, 32).to(torch.float64)
    lo = (word & 0xFFFFFFFF).to(torch.float64)
    return (hi + 0.5) * 2.0**-32, (lo + 0.5) * 2.0**-32


def normal(keys: torch.Tensor, counter: Counter, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal draws by Box-Muller from the two uniforms of one word."""
    u1, u2 = uniform_pair(keys, counter)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype)
