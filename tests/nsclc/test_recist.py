"""RECIST 1.1 hand cases (Eisenhauer 2009): boundaries, nadir rule, best overall response."""

from __future__ import annotations

import math

import pytest
import torch

from oncobench.nsclc.recist import (
    Response,
    best_overall_response,
    classify,
    measured_sld_mm,
    update_nadir,
)

NE, CR, PR, SD, PD = (int(r) for r in Response)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def codes(sld, baseline, nadir, new=None) -> list[int]:
    sld, baseline, nadir = t(*sld), t(*baseline), t(*nadir)
    new = torch.zeros_like(sld, dtype=torch.bool) if new is None else torch.tensor(new)
    out = classify(sld, baseline, nadir, new)
    assert out.dtype == torch.int8
    return out.tolist()


def test_partial_response_boundary_is_exactly_minus_30_percent():
    # 50 -> 35 is exactly -30%: PR; 35.1 is -29.8%: SD
    baseline = [50.0, 50.0, 100.0, 100.0]
    assert codes([35.0, 35.1, 70.0, 70.1], baseline, baseline) == [PR, SD, PR, SD]


def test_progression_needs_both_20_percent_and_5_mm():
    assert codes(
        [36.0, 24.0, 30.0, 29.9, 56.0],
        [30.0, 20.0, 25.0, 25.0, 60.0],
        [30.0, 20.0, 25.0, 25.0, 50.0],
    ) == [
        PD,  # +20% and +6 mm
        SD,  # +20% but only +4 mm
        PD,  # exactly +20% and exactly +5 mm
        SD,  # +19.6%, +4.9 mm
        SD,  # +6 mm but only +12%
    ]


def test_progression_is_judged_against_the_nadir_not_the_baseline():
    # baseline 100, nadir 40: 50 is still -50% vs baseline (a PR by size) but +25% / +10 mm vs nadir
    assert codes([50.0], [100.0], [40.0]) == [PD]
    # the same 50 mm with the nadir at baseline is a PR
    assert codes([50.0], [100.0], [100.0]) == [PR]


def test_new_lesion_is_progression_whatever_the_sum():
    new = [True, True, True]
    assert codes([0.0, 20.0, float("nan")], [50.0, 50.0, 50.0], [50.0, 10.0, 50.0], new) == [PD, PD, PD]


def test_complete_response_and_not_evaluable():
    assert codes([0.0, 4.9, 5.0, float("nan")], [30.0] * 4, [30.0] * 4) == [CR, CR, PR, NE]
    # after a CR (nadir 0) a regrowth of >= 5 mm is PD; a 4 mm reading is still CR
    assert codes([6.0, 4.0], [30.0, 30.0], [0.0, 0.0]) == [PD, CR]
    out = classify(t(9.0), t(30.0), t(30.0), torch.tensor([False]), cr_below_mm=10.0)
    assert out.tolist() == [CR]


def test_update_nadir_includes_baseline_and_skips_unscanned():
    nadir = t(50.0, 50.0, 50.0, 50.0)
    sld = t(40.0, 60.0, 30.0, float("nan"))
    scanned = torch.tensor([True, True, False, True])
    assert update_nadir(nadir, sld, scanned).tolist() == [40.0, 50.0, 50.0, 50.0]


def test_nadir_sequence_drives_classification():
    baseline = t(100.0)
    nadir = baseline.clone()
    seen = []
    for sld in (80.0, 60.0, 71.0, 73.0):
        seen.append(classify(t(sld), baseline, nadir, torch.tensor([False])).item())
        nadir = update_nadir(nadir, t(sld), torch.tensor([True]))
    # 60 is a PR; 71 is -29% vs baseline and +18.3% vs nadir 60 (SD); 73 is +21.7% and +13 mm
    # vs nadir 60 (PD) although it is below the 80 mm of the first scan
    assert seen == [SD, PR, SD, PD]


def bor(rows, days=None, confirm=None, min_sd=0.0, scanned=None):
    c = torch.tensor(rows, dtype=torch.int8)
    s = torch.ones_like(c, dtype=torch.bool) if scanned is None else torch.tensor(scanned)
    d = None if days is None else torch.tensor(days, dtype=torch.float64)
    return best_overall_response(c, s, confirm_days=confirm, scan_day=d, min_sd_days=min_sd).tolist()


def test_bor_without_confirmation():
    rows = [
        [SD, PR, PD, CR],  # best before progression: PR (the CR after PD is ignored)
        [PD, CR, CR, CR],  # progression at the first scan
        [SD, SD, SD, SD],
        [PR, CR, SD, PD],
        [NE, NE, NE, NE],  # nothing evaluable
        [SD, NE, PR, SD],
    ]
    assert bor(rows) == [PR, PD, SD, CR, NE, PR]


def test_bor_without_any_scan_is_ne():
    assert bor([[PR, SD]], scanned=[[False, False]]) == [NE]
    assert bor([[PR, SD]], scanned=[[False, True]]) == [SD]


def test_bor_with_confirmation():
    days = [[42.0, 84.0, 126.0, 168.0]] * 7
    rows = [
        [PR, PR, SD, PD],  # PR confirmed 42 d later
        [PR, SD, PR, PD],  # a PR never sustained to the next scan: SD
        [CR, CR, PD, PD],  # CR confirmed
        [CR, PR, SD, SD],  # CR then PR: a confirmed PR (CR/PR sustained), not a CR
        [SD, SD, SD, PR],  # last-scan PR cannot be confirmed: SD
        [PR, PD, SD, SD],  # unconfirmed PR then PD: the PR counts as SD
        [PD, PR, PR, PR],
    ]
    assert bor(rows, days, confirm=28) == [PR, SD, CR, PR, SD, SD, PD]
    assert bor(rows, days, confirm=None) == [PR, PR, CR, CR, PR, PR, PD]


def test_confirmation_needs_the_interval_and_a_sustained_response():
    # scans 14 days apart: the PR at day 14 is confirmed only by the day-42 scan (>= 28 d later),
    # and every scan in between must still be a response
    days = [[14.0, 28.0, 42.0], [14.0, 28.0, 42.0], [14.0, 28.0, 42.0]]
    rows = [[PR, PR, PR], [PR, SD, PR], [PR, PR, SD]]
    # row 3: the day-28 PR is too soon to confirm the day-14 one, the day-42 scan is SD
    assert bor(rows, days, confirm=28) == [PR, SD, SD]
    # a day-28 PR has no scan >= 28 days later
    assert bor([[SD, PR, PR]], [[14.0, 28.0, 42.0]], confirm=28) == [SD]


def test_min_sd_duration():
    days = [[21.0, 42.0], [21.0, 42.0], [21.0, 63.0]]
    rows = [[SD, PD], [SD, NE], [SD, SD]]
    assert bor(rows, days, min_sd=35.0) == [PD, NE, SD]
    with pytest.raises(ValueError, match="scan_day"):
        bor(rows, None, min_sd=35.0)


def test_measurement_error_model():
    true = torch.full((200_000,), 50.0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    m = measured_sld_mm(true, z, cv=0.1, sd_mm=2.0)
    # mean-one multiplicative factor: E = 50; Var = (50 * 0.1)^2 + 2^2
    n = true.numel()
    sd = math.sqrt(25.0 + 4.0)
    assert abs(float(m.mean()) - 50.0) < 4 * sd / math.sqrt(n)
    assert abs(float(m.std()) - sd) < 0.02 * sd
    # no noise -> exact; floor at zero
    zero = torch.zeros(3, 2, dtype=torch.float64)
    assert measured_sld_mm(t(0.0, 10.0, 30.0), zero, cv=0.0, sd_mm=0.0).tolist() == [0.0, 10.0, 30.0]
    neg = torch.tensor([[0.0, -10.0]], dtype=torch.float64)
    assert measured_sld_mm(t(3.0), neg, cv=0.05, sd_mm=2.0).tolist() == [0.0]
    with pytest.raises(ValueError, match="shape"):
        measured_sld_mm(t(1.0, 2.0), torch.zeros(2), cv=0.1, sd_mm=1.0)
