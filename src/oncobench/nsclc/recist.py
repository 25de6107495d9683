"""RECIST 1.1 response of one summed target-lesion diameter (Eisenhauer 2009 EJC 45:228, brief §4).

Tensors are batched: a leading ``rows`` dimension (patients x arms x replicates) and, for the
best overall response, a ``scans`` dimension of post-baseline assessments. Response codes
are :class:`Response` values stored as int8.

The model has a single sum of longest diameters (SLD) per patient, so:

* CR: RECIST requires every target lesion to disappear (nodes < 10 mm short axis). RECIST
  records a lesion that is present but too small to measure as 5 mm (0 mm only when it has
  gone), so a measured sum below ``CR_BELOW_MM`` = 5 mm cannot contain a visible lesion:
  CR when ``sld < 5 mm``.
* PR: ``sld <= 0.7 x baseline`` (>= 30% decrease vs baseline).
* PD: ``sld >= 1.2 x nadir`` and ``sld - nadir >= 5 mm`` (nadir = smallest sum so far,
  baseline included), or a new lesion.
* SD: none of these. A missing measurement (NaN) is NE.

The boundaries are written as ``10 sld <= 7 baseline`` and ``10 sld >= 12 nadir`` so that
a change of exactly -30% / +20% between whole-millimetre sums is classified as the criterion
states, without floating-point rounding of 0.7 and 1.2.
"""

from __future__ import annotations

import enum
import math

import torch


class Response(enum.IntEnum):
    """RECIST 1.1 response codes (int8 in tensors)."""

    NE = 0
    CR = 1
    PR = 2
    SD = 3
    PD = 4


RESPONSE_LABELS = tuple(r.name for r in Response)

# See module docstring: RECIST 1.1 records "too small to measure" as 5 mm.
CR_BELOW_MM = 5.0
# Eisenhauer 2009: PD needs +20% over the nadir and >= 5 mm absolute increase.
PD_ABSOLUTE_MM = 5.0
# Confirmation of CR/PR >= 4 weeks later when response is the primary endpoint (brief §4).
CONFIRM_DAYS = 28
# Measurement error defaults for :func:`measured_sld_mm`.
# Additive: repeat CT of lung tumours within 15 minutes, SD of the change 2.4 mm (Oxnard 2011
# JCO 29:3114) -> 2.4 / sqrt(2) = 1.7 mm per measurement (derived).
MEASUREMENT_SD_MM = 2.4 / math.sqrt(2.0)
# Multiplicative: inter-reader CV 5% (**unconfirmed**; McErlean 2013 Radiology 269:451 reports
# 95% limits of agreement of -6.2% to +4.7% for short axes of lesions >= 20 mm; inter-reader variation is
# larger, Erasmus 2003 JCO 21:2574 misclassified progression in 30% of unidimensional reads).
MEASUREMENT_CV = 0.05


def classify(
    sld_mm: torch.Tensor,
    baseline_mm: torch.Tensor,
    nadir_mm: torch.Tensor,
    new_lesion: torch.Tensor,
    *,
    cr_below_mm: float = CR_BELOW_MM,
) -> torch.Tensor:
    """RECIST 1.1 time-point response of a measured SLD (mm), as int8 :class:`Response` codes.

    Args:
        sld_mm: measured sum of diameters at this scan; NaN = not evaluable.
        baseline_mm: baseline sum (the PR reference).
        nadir_mm: smallest sum before this scan, baseline included (the PD reference).
        new_lesion: bool, an unequivocal new lesion at this scan (PD whatever the sum).
        cr_below_mm: a sum strictly below this is a complete response.

    Returns:
        int8 codes, broadcast shape of the inputs. Precedence PD > CR > PR > SD; NE where
        ``sld_mm`` is NaN and there is no new lesion.
    """
    progression = (10.0 * sld_mm >= 12.0 * nadir_mm) & (sld_mm - nadir_mm >= PD_ABSOLUTE_MM)
    partial = 10.0 * sld_mm <= 7.0 * baseline_mm
    complete = sld_mm < cr_below_mm
    code = torch.full_like(sld_mm, int(Response.SD), dtype=torch.int8)

    def const(r: Response) -> torch.Tensor:
        return torch.tensor(int(r), dtype=torch.int8, device=code.device)

    code = torch.where(partial, const(Response.PR), code)
    code = torch.where(complete, const(Response.CR), code)
    code = torch.where(torch.isnan(sld_mm), const(Response.NE), code)
    return torch.where(progression | new_lesion.to(torch.bool), const(Response.PD), code)


def update_nadir(nadir_mm: torch.Tensor, sld_mm: torch.Tensor, scanned: torch.Tensor) -> torch.Tensor:
    """Nadir after a scan: ``min(nadir, sld)`` where ``scanned`` (and the SLD is measured), else unchanged.

    Start from the baseline sum (RECIST 1.1: the nadir includes the baseline). Call after
    :func:`classify` for the same scan: PD is judged against the nadir *before* the scan.
    """
    take = scanned.to(torch.bool) & ~torch.isnan(sld_mm)
    return torch.where(take, torch.minimum(nadir_mm, sld_mm), nadir_mm)


def best_overall_response(
    codes: torch.Tensor,
    scanned: torch.Tensor,
    *,
    confirm_days: int | None = None,
    scan_day: torch.Tensor | None = None,
    min_sd_days: float = 0.0,
) -> torch.Tensor:
    """RECIST 1.1 best overall response per row, as int8 :class:`Response` codes.

    Only evaluable post-baseline scans count (``scanned`` and code != NE), up to and including
    the first PD; later scans are ignored.

    Without confirmation (``confirm_days=None``): CR if any CR, else PR if any PR, else SD
    if an SD-or-better scan on or after ``min_sd_days``, else PD if a PD scan, else NE.

    With confirmation: a CR (PR) at scan ``i`` is confirmed when every evaluable scan after
    ``i`` up to and including the first one at least ``confirm_days`` later is CR (CR or PR),
    i.e. the response is sustained until a scan >= ``confirm_days`` later (Eisenhauer 2009
    §4.3; brief §4). BOR = CR if a CR is confirmed, else PR if a CR/PR is confirmed, else
    the unconfirmed responses count as SD: SD if an SD-or-better scan lies on or after
    ``min_sd_days``, else PD if a PD scan, else NE.

    Args:
        codes: (rows, scans) time-point codes from :func:`classify`.
        scanned: (rows, scans) bool, a scan took place.
        confirm_days: minimum days between a response and its confirmation; None = no
            confirmation (response not the primary endpoint).
        scan_day: (rows, scans) day of each scan; needed for confirmation or ``min_sd_days``.
        min_sd_days: SD needs a scan at least this many days after baseline (0 = any scan).

    Returns:
        (rows,) int8 codes.
    """
    c = codes.to(torch.int64)
    valid = scanned.to(torch.bool) & (c != int(Response.NE))
    rows, scans = c.shape
    idx = torch.arange(scans, device=c.device).expand(rows, scans)
    is_pd = valid & (c == int(Response.PD))
    first_pd = torch.where(is_pd, idx, torch.full_like(idx, scans)).min(dim=1, keepdim=True).values
    before_pd = valid & (idx < first_pd)
    if (confirm_days is not None or min_sd_days > 0) and scan_day is None:
        raise ValueError("best_overall_response: scan_day is needed for confirm_days or min_sd_days")

    cr = before_pd & (c == int(Response.CR))
    pr = before_pd & ((c == int(Response.CR)) | (c == int(Response.PR)))
    if confirm_days is not None:
        cr = _confirmed(cr, valid, scan_day, float(confirm_days))
        pr = _confirmed(pr, valid, scan_day, float(confirm_days))
    sd_ok = before_pd & (c != int(Response.PD))
    if min_sd_days > 0:
        sd_ok = sd_ok & (scan_day >= min_sd_days)

    out = torch.full((rows,), int(Response.NE), dtype=torch.int8, device=c.device)
    for mask, code in (
        (is_pd.any(dim=1), Response.PD),
        (sd_ok.any(dim=1), Response.SD),
        (pr.any(dim=1), Response.PR),
        (cr.any(dim=1), Response.CR),
    ):
        out = torch.where(mask, torch.tensor(int(code), dtype=torch.int8, device=c.device), out)
    return out


def _confirmed(
    good: torch.Tensor, valid: torch.Tensor, scan_day: torch.Tensor, confirm_days: float
) -> torch.Tensor:
    """(rows, scans) bool: ``good`` at scan i and at every valid scan after i up to the first
    valid scan j with ``day_j - day_i >= confirm_days`` (which must exist).

    A loop over i keeps memory at O(rows x scans) for large batches.
    """
    rows, scans = good.shape
    idx = torch.arange(scans, device=good.device).expand(rows, scans)
    day = scan_day.to(torch.float64)
    none = torch.full_like(idx, scans)
    out = torch.zeros_like(good)
    for i in range(scans):
        later = valid & (idx > i)
        confirming = later & (day - day[:, i : i + 1] >= confirm_days)
        first_confirm = torch.where(confirming, idx, none).min(dim=1).values
        first_bad = torch.where(later & ~good, idx, none).min(dim=1).values
        out[:, i] = good[:, i] & (first_confirm < scans) & (first_confirm < first_bad)
    return out


def measured_sld_mm(
    true_sld_mm: torch.Tensor, z: torch.Tensor, cv: float = MEASUREMENT_CV, sd_mm: float = MEASUREMENT_SD_MM
) -> torch.Tensor:
    """A CT reading of a true SLD: multiplicative log-normal and additive normal error, floored at 0.

    ``measured = max(0, true * exp(s z0 - s^2 / 2) + sd_mm z1)`` with ``s^2 = log(1 + cv^2)``,
    so the multiplicative factor has mean 1 and coefficient of variation ``cv``.

    Args:
        true_sld_mm: true sum of diameters (mm), any shape.
        z: standard normals of shape ``(*true_sld_mm.shape, 2)``: ``z[..., 0]`` multiplicative,
            ``z[..., 1]`` additive (draw them from the scan's random stream).
        cv: coefficient of variation of the multiplicative error (default ``MEASUREMENT_CV``).
        sd_mm: SD of the additive error in mm (default ``MEASUREMENT_SD_MM``).

    Returns:
        Measured SLD in mm, same shape as ``true_sld_mm``.
    """
    if z.shape[-1] != 2 or z.shape[:-1] != true_sld_mm.shape:
        expected = (*true_sld_mm.shape, 2)
        raise ValueError(f"measured_sld_mm: z must have shape {expected}, got {tuple(z.shape)}")
    s2 = math.log1p(cv * cv)
    factor = torch.exp(math.sqrt(s2) * z[..., 0] - 0.5 * s2)
    return (true_sld_mm * factor + sd_mm * z[..., 1]).clamp_min(0.0)
