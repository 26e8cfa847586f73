"""Per-map statistics against closed forms and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salience.audit.stats import map_statistics, region_columns, si_pattern, stat_columns


def one(maps: np.ndarray, **kw: object) -> dict[str, object]:
    cols = map_statistics(maps[None], **kw)  # type: ignore[arg-type]
    return {k: v[0] for k, v in cols.items()}


def test_uniform_map_closed_forms() -> None:
    h = w = 8
    st = one(np.ones((h, w)))
    assert st["entropy"] == pytest.approx(1.0)
    assert st["gini"] == pytest.approx(0.0, abs=1e-12)
    assert (st["com_y"], st["com_x"]) == pytest.approx((0.5, 0.5))
    # variance of the discrete uniform on pixel centres (i + 0.5) / h is (h^2 - 1) / (12 h^2)
    assert st["spread"] == pytest.approx(math.sqrt(2 * (h * h - 1) / (12 * h * h)))
    # the 10% band of an 8-pixel side is 1 pixel: 64 - 36 border pixels of 64
    assert st["border_share"] == pytest.approx(28 / 64)
    assert st["error"] is None


def test_one_hot_map() -> None:
    m = np.zeros((10, 20))
    m[3, 15] = 2.5
    st = one(m)
    n = m.size
    assert st["entropy"] == pytest.approx(0.0)
    assert st["gini"] == pytest.approx((n - 1) / n)
    assert (st["peak_y"], st["peak_x"]) == pytest.approx((3.5 / 10, 15.5 / 20))
    assert (st["com_y"], st["com_x"]) == pytest.approx((0.35, 0.775))
    assert st["spread"] == pytest.approx(0.0)
    assert st["border_share"] == pytest.approx(0.0)
    m2 = np.zeros((10, 20))
    m2[0, 5] = 1.0
    assert one(m2)["border_share"] == pytest.approx(1.0)


def test_two_points_entropy_and_centre() -> None:
    m = np.zeros((4, 4))
    m[0, 0] = 1.0
    m[3, 3] = 3.0
    st = one(m)
    q = np.array([0.25, 0.75])
    assert st["entropy"] == pytest.approx(-(q * np.log(q)).sum() / np.log(16))
    assert st["com_y"] == pytest.approx(0.25 * 0.125 + 0.75 * 0.875)
    d = 0.875 - 0.125
    assert st["spread"] == pytest.approx(math.sqrt(2 * 0.25 * 0.75 * d * d))


def test_gini_matches_mean_absolute_difference() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 7))
    a = np.abs(m).ravel()
    n = a.size
    reference = np.abs(a[:, None] - a[None, :]).sum() / (2 * n * a.sum())
    assert one(m)["gini"] == pytest.approx(reference)


def test_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 9, 9))
    masks = [rng.integers(0, 3, size=(9, 9)) for _ in range(5)]
    regions = ["background", "head", "uniform"]
    correct = [True, False, True, None, False]
    batch = map_statistics(maps, masks, regions, correct)
    for i in range(5):
        single = map_statistics(maps[i : i + 1], masks[i : i + 1], regions, correct[i : i + 1])
        for key, col in batch.items():
            if key in ("error", "si_pattern"):
                assert col[i] == single[key][0]
            else:
                np.testing.assert_allclose(col[i], single[key][0])


def test_location_uses_positive_part_only() -> None:
    m = np.zeros((5, 5))
    m[1, 1] = 1.0
    m[4, 4] = -100.0
    st = one(m)
    assert (st["com_y"], st["com_x"]) == pytest.approx((0.3, 0.3))
    assert (st["peak_y"], st["peak_x"]) == pytest.approx((0.3, 0.3))
    # complexity uses |s|: the large negative pixel dominates
    assert st["entropy"] < 0.05


def test_region_shares_density_and_shared_interest() -> None:
    # left half region 1 ("head"), right half background; mass 3 on the left, 1 on the right
    h, w = 4, 4
    mask = np.zeros((h, w), dtype=np.int64)
    mask[:, :2] = 1
    m = np.zeros((h, w))
    m[0, 0] = 3.0
    m[0, 3] = 1.0
    regions = ["background", "head"]
    st = one(m, masks=[mask], regions=regions, correct=[True])
    assert st["share_head"] == pytest.approx(0.75)
    assert st["share_background"] == pytest.approx(0.25)
    assert st["density_head"] == pytest.approx(0.75 / 0.5)
    # S = {a >= mean + std}: both non-zero pixels; G = 8 left pixels
    a = np.abs(m).ravel()
    sal = a >= a.mean() + a.std()
    assert sal.sum() == 2
    assert st["si_iou"] == pytest.approx(1 / 9)
    assert st["si_ground_truth_coverage"] == pytest.approx(1 / 8)
    assert st["si_saliency_coverage"] == pytest.approx(0.75)
    assert st["si_pattern"] == "sufficient_subset"


def test_ground_truth_can_name_regions() -> None:
    mask = np.array([[1, 2], [0, 0]])
    m = np.array([[0.0, 1.0], [0.0, 0.0]])
    regions = ["background", "head", "uniform"]
    head = one(m, masks=[mask], regions=regions, correct=[True], ground_truth=["head"])
    uni = one(m, masks=[mask], regions=regions, correct=[True], ground_truth=["uniform"])
    assert head["si_saliency_coverage"] == 0.0
    assert uni["si_saliency_coverage"] == 1.0
    assert uni["si_iou"] == 1.0 and uni["si_pattern"] == "human_aligned"


def test_region_absent_in_image_has_undefined_density() -> None:
    mask = np.zeros((3, 3), dtype=np.int64)
    st = one(np.ones((3, 3)), masks=[mask], regions=["background", "head"], correct=[True])
    assert st["share_head"] == 0.0
    assert math.isnan(st["density_head"])
    assert math.isnan(st["si_iou"]) and st["si_pattern"] is None


def test_degenerate_maps_are_recorded() -> None:
    nan_map = np.ones((4, 4))
    nan_map[1, 1] = np.nan
    zero = np.zeros((4, 4))
    negative = -np.ones((4, 4))
    cols = map_statistics(np.stack([nan_map, zero, negative]))
    assert cols["error"][0].startswith("non-finite map")
    assert cols["error"][1].startswith("empty map")
    assert cols["error"][2].startswith("no positive saliency")
    assert all(math.isnan(cols["com_y"][i]) for i in range(3))
    assert cols["entropy"][2] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("cov", "correct", "expected"),
    [
        ((0.6, 0.9, 0.7), True, "human_aligned"),
        ((0.6, 0.9, 0.7), False, "confuser"),
        ((0.2, 0.8, 0.2), True, "sufficient_subset"),
        ((0.2, 0.8, 0.2), False, "insufficient_subset"),
        ((0.2, 0.3, 0.9), True, "context_dependent"),
        ((0.2, 0.3, 0.9), False, "context_confusion"),
        ((0.1, 0.2, 0.1), True, "sufficient_context"),
        ((0.1, 0.2, 0.1), False, "distractor"),
        ((0.1, 0.2, 0.1), None, None),
    ],
)
def test_si_pattern(
    cov: tuple[float, float, float], correct: bool | None, expected: str | None
) -> None:
    assert si_pattern(*cov, correct) == expected


def test_region_columns_are_identifiers_and_unique() -> None:
    cols = region_columns(["background", "Hat Brim", "hat-brim", "ü"])
    assert cols == {
        "background": "background",
        "Hat Brim": "hat_brim",
        "hat-brim": "hat_brim_2",
        "ü": "region",
    }
    assert stat_columns([])[-1] == "border_share"
    assert "si_iou" in stat_columns(["background", "head"])
