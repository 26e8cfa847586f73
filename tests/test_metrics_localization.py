"""Localization metrics and Shared Interest on hand-made maps and masks with known answers."""

from __future__ import annotations

import math

import pytest
import torch

import salience.metrics as M
from salience.errors import SalienceError


def box_mask(n: int = 1, size: int = 20) -> torch.Tensor:
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, 5:10, 5:10] = True
    return m


def point_map(y: int, x: int, size: int = 20) -> torch.Tensor:
    s = torch.zeros(1, size, size)
    s[0, y, x] = 1.0
    return s


def test_pointing_game_tolerance_is_euclidean() -> None:
    masks = box_mask()
    assert M.pointing_game(point_map(7, 7), masks, tolerance=0).value == 1.0
    # (7, 13) is 4 px right of the mask's last column (9)
    assert M.pointing_game(point_map(7, 13), masks, tolerance=3).value == 0.0
    assert M.pointing_game(point_map(7, 13), masks, tolerance=4).value == 1.0
    # (13, 13): nearest mask pixel (9, 9) is sqrt(32) = 5.66 px away
    assert M.pointing_game(point_map(13, 13), masks, tolerance=5.6).value == 0.0
    assert M.pointing_game(point_map(13, 13), masks, tolerance=5.7).value == 1.0
    r = M.pointing_game(point_map(13, 13), masks)
    assert r.params == {"tolerance": 15.0} and r.details["points"] == [[13, 13]]


def test_boxes_and_masks_agree_and_empty_masks_are_nan() -> None:
    s = torch.rand(2, 20, 20)
    boxes = torch.tensor([[5, 5, 10, 10], [0, 0, 0, 0]])  # x0, y0, x1, y1; the second is empty
    masks = box_mask(2)
    masks[1] = False
    for name in (
        "pointing_game",
        "energy_pointing_game",
        "relevance_mass",
        "relevance_rank",
        "top_k_iou",
    ):
        fn = M.get_metric(name)
        a, b = fn(s, boxes).scores, fn(s, masks).scores
        assert a[0] == b[0] and math.isnan(a[1]) and math.isnan(b[1]), name


def test_box_convention_is_x_then_y() -> None:
    boxes = torch.tensor([[2, 5, 4, 6]])  # columns 2..3, row 5
    m = torch.zeros(1, 8, 10, dtype=torch.bool)
    m[0, 5, 2:4] = True
    s = torch.rand(1, 8, 10)
    assert M.relevance_mass(s, boxes).value == M.relevance_mass(s, m).value


def test_energy_pointing_game_and_relevance_mass_count_positive_relevance_only() -> None:
    s = torch.zeros(1, 20, 20)
    s[0, 5:10, 5:10] = 1.0  # 25 inside
    s[0, 15:20, 15:20] = 3.0  # 75 outside
    s[0, 0, 0] = -100.0  # negative relevance is ignored
    m = box_mask()
    assert M.energy_pointing_game(s, m).value == pytest.approx(0.25)
    assert M.relevance_mass(s, m).value == pytest.approx(0.25)
    assert math.isnan(M.relevance_mass(-s.abs(), m).value)  # nothing positive


def test_relevance_rank_and_top_k_iou() -> None:
    m = box_mask()  # 25 pixels
    s = torch.zeros(1, 20, 20)
    s[0, 5:10, 5:8] = 2.0  # 15 mask pixels ranked highest
    s[0, 0:2, 0:5] = 1.0  # then 10 pixels outside
    assert M.relevance_rank(s, m).value == pytest.approx(15 / 25)
    assert M.top_k_iou(s, m).value == pytest.approx(15 / 35)  # top 25: 15 in, 10 out
    # top 5% = 20 pixels: the 15 inside plus 5 of the tied outside ones
    assert M.top_k_iou(s, m, fraction=0.05).value == pytest.approx(15 / 30)
    assert M.top_k_iou(-s, m, absolute=True).value == pytest.approx(15 / 35)


def test_shared_interest_coverages_on_hand_made_masks() -> None:
    g = torch.zeros(1, 10, 10, dtype=torch.bool)
    g[0, 0:4, 0:5] = True  # |G| = 20
    s = torch.zeros(1, 10, 10)
    s[0, 2:6, 0:5] = 1.0  # |S| = 20, overlap rows 2..3 -> 10
    r = M.shared_interest(s, g, binarize_by="percentile", percentile=80)
    assert r.value == pytest.approx(10 / 30)
    assert r.details["ground_truth_coverage"] == [pytest.approx(0.5)]
    assert r.details["saliency_coverage"] == [pytest.approx(0.5)]
    assert r.details["continuous_saliency_coverage"] == [pytest.approx(0.5)]
    # mean + 1 std binarises the same 20 pixels (value 1 vs 0, 20% ones)
    assert M.shared_interest(s, g).value == pytest.approx(10 / 30)


def test_shared_interest_eight_patterns() -> None:
    g = torch.zeros(4, 10, 10, dtype=torch.bool)
    g[:, 0:4, 0:5] = True  # 20 pixels
    s = torch.zeros(4, 10, 10)
    s[0, 0:4, 0:5] = 1  # the same region: aligned
    s[1, 0:2, 0:2] = 1  # a small part of it: subset
    s[2, 0:8, 0:10] = 1  # all of it and much context: context
    s[3, 6:10, 5:10] = 1  # elsewhere
    expected_correct = [
        "human_aligned",
        "sufficient_subset",
        "context_dependent",
        "sufficient_context",
    ]
    expected_wrong = ["confuser", "insufficient_subset", "context_confusion", "distractor"]
    # mean + 0 std: exactly the pixels set to 1 in each map
    right = M.shared_interest(s, g, [True] * 4, std_k=0.0)
    wrong = M.shared_interest(s, g, torch.zeros(4, dtype=torch.bool), std_k=0.0)
    assert right.details["patterns"] == expected_correct
    assert wrong.details["patterns"] == expected_wrong
    assert right.params["high"] == 0.5
    with pytest.raises(SalienceError, match="entries"):
        M.shared_interest(s, g, [True])


def test_masks_of_the_wrong_shape_are_a_user_error() -> None:
    with pytest.raises(SalienceError, match="masks must be"):
        M.pointing_game(torch.rand(2, 8, 8), torch.ones(2, 7, 8))
