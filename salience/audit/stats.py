"""Per-map saliency statistics: how concentrated a map is, where its mass lies, and how much
of it falls in each annotated region.

All statistics are computed on the map at the stored resolution, in float64. Complexity
statistics use the absolute map ``a = |s|`` (as Quantus does); location and region statistics
use the positive part ``p = max(s, 0)``, the evidence *for* the explained class.

- ``entropy``: Shannon entropy of ``a / sum(a)`` divided by ``log(h*w)``, in [0, 1]
  (1 = uniform); the normalised form of Bhatt et al.'s complexity (IJCAI 2020).
- ``gini``: Gini index of ``a`` (Chalasani et al., ICML 2020, "sparseness"):
  ``sum_i (2i - n - 1) a_(i) / (n sum a)`` with ``a`` sorted ascending; 0 = uniform.
- ``peak_y, peak_x``: the pixel of the largest value; ``com_y, com_x``: centre of mass of
  ``p``; ``spread``: root mean squared distance of ``p`` from that centre. Coordinates are
  fractions of height and width, measured at pixel centres.
- ``border_share``: share of ``p`` in the outer band of 10% of the height/width on each side.
- With a region mask: ``share_<region>`` (share of ``p``) and ``density_<region>`` (share
  divided by the region's share of the area; 1 = as much as its size predicts).
- Shared Interest (Boggust et al., CHI 2022): the ground truth ``G`` is the union of the
  annotated regions (all but background, or those named), the saliency set ``S`` is
  ``a >= mean(a) + std(a)`` (their ``binarize_std``); ``si_iou = |G∩S|/|G∪S|``,
  ``si_ground_truth_coverage = |G∩S|/|G|``, and ``si_saliency_coverage = sum_G a / sum a``
  (their continuous saliency coverage). ``si_pattern`` names the case (see :func:`si_pattern`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

BASE_COLUMNS = ("entropy", "gini", "peak_y", "peak_x", "com_y", "com_x", "spread", "border_share")
SI_COLUMNS = ("si_iou", "si_saliency_coverage", "si_ground_truth_coverage")
BORDER = 0.1
HIGH = 0.5  # a coverage at or above this counts as "high" in si_pattern

# What each statistic means, one sentence each: the explorer's tooltips and legends read it.
STAT_DESCRIPTIONS: dict[str, str] = {
    "entropy": "How evenly the map's absolute saliency is spread: 0 = all on one pixel, "
    "1 = uniform over the image.",
    "gini": "How concentrated the map's absolute saliency is (Gini index): 0 = uniform, "
    "near 1 = a few pixels hold nearly all of it.",
    "peak_y": "Height of the map's largest value, as a fraction of the image height "
    "(0 = top, 1 = bottom).",
    "peak_x": "Position of the map's largest value across the image, as a fraction of the "
    "width (0 = left, 1 = right).",
    "com_y": "Height of the centre of mass of the positive saliency, as a fraction of the "
    "image height (0 = top, 1 = bottom).",
    "com_x": "Horizontal centre of mass of the positive saliency, as a fraction of the "
    "width (0 = left, 1 = right).",
    "spread": "Root mean squared distance of the positive saliency from its centre of mass, "
    "in fractions of the image side: small = one compact spot.",
    "border_share": f"Share of the positive saliency in the outer {BORDER:.0%} band along "
    "each edge; high values often mean the model reads the frame or background.",
    "si_iou": "Shared Interest IoU: overlap of the salient pixels (mean + 1 std) with the "
    "annotated regions, as intersection over union.",
    "si_saliency_coverage": "Shared Interest saliency coverage: share of the absolute "
    "saliency that falls inside the annotated regions.",
    "si_ground_truth_coverage": "Shared Interest ground-truth coverage: share of the "
    "annotated regions' pixels that are salient (mean + 1 std).",
}
_REGION_DESCRIPTIONS = {
    "share": "Share of the positive saliency that falls in the {region} region.",
    "density": "The {region} region's share of the positive saliency divided by its share "
    "of the image area: 1 = as much as its size predicts, above 1 = the model looks there more.",
}


def describe_stat(name: str, regions: Mapping[str, str] | None = None) -> str | None:
    """One sentence on what the statistic column ``name`` means (None for an unknown one);
    ``share_<id>`` and ``density_<id>`` name their region, found in ``regions`` (region name
    -> column id, as :func:`region_columns` makes them) when given."""
    if name in STAT_DESCRIPTIONS:
        return STAT_DESCRIPTIONS[name]
    kind, sep, ident = name.partition("_")
    if not (sep and ident and kind in _REGION_DESCRIPTIONS):
        return None
    names = {v: k for k, v in (regions or {}).items()}
    return _REGION_DESCRIPTIONS[kind].format(region=names.get(ident, ident.replace("_", " ")))


Columns = dict[str, np.ndarray | list[str | None]]


def region_columns(regions: Sequence[str]) -> dict[str, str]:
    """Region name -> the identifier used in ``share_<id>`` / ``density_<id>`` columns."""
    out: dict[str, str] = {}
    for name in regions:
        base = re.sub(r"[^0-9a-z_]+", "_", name.lower()).strip("_") or "region"
        ident, k = base, 2
        while ident in out.values():
            ident, k = f"{base}_{k}", k + 1
        out[name] = ident
    return out


def stat_columns(regions: Sequence[str]) -> list[str]:
    """Every numeric statistic column, in table order, for a run with these regions."""
    ids = list(region_columns(regions).values())
    cols = [*BASE_COLUMNS, *(f"share_{i}" for i in ids), *(f"density_{i}" for i in ids)]
    return cols + list(SI_COLUMNS) if regions else cols


def si_pattern(
    iou: float, saliency_cov: float, gt_cov: float, correct: bool | None, high: float = HIGH
) -> str | None:
    """The Shared Interest case of one image (Boggust et al., CHI 2022, Table 1).

    A decision list over coverages, each "high" when ``>= high``: high IoU -> human aligned
    (correct) / confuser (wrong); else high saliency coverage -> sufficient / insufficient
    subset; else high ground-truth coverage -> context dependent / context confusion; else
    sufficient context (correct) / distractor (wrong). None without a known correctness.
    """
    if correct is None or not all(np.isfinite([iou, saliency_cov, gt_cov])):
        return None
    if iou >= high:
        return "human_aligned" if correct else "confuser"
    if saliency_cov >= high:
        return "sufficient_subset" if correct else "insufficient_subset"
    if gt_cov >= high:
        return "context_dependent" if correct else "context_confusion"
    return "sufficient_context" if correct else "distractor"


def map_statistics(
    maps: np.ndarray,
    masks: Sequence[np.ndarray | None] | None = None,
    regions: Sequence[str] = (),
    correct: Sequence[bool | None] | None = None,
    ground_truth: Sequence[str] | None = None,
) -> Columns:
    """Statistics of ``maps`` ``[N, h, w]``; ``masks[i]`` holds global region indices
    ``[h, w]`` (0 = background) or None. Returns columns of length N; NaN where undefined,
    with the reason in the ``error`` column."""
    s = np.asarray(maps, dtype=np.float64)
    n, h, w = s.shape
    finite = np.asarray(np.isfinite(s).all(axis=(1, 2)))
    s = np.where(np.isfinite(s), s, 0.0)
    a = np.abs(s).reshape(n, -1)
    p = np.clip(s, 0, None)
    total_a = a.sum(1)
    total_p = p.sum(axis=(1, 2))
    ok_a = finite & (total_a > 0)
    ok_p = finite & (total_p > 0)
    safe_a = np.where(ok_a, total_a, 1.0)
    safe_p = np.where(ok_p, total_p, 1.0)

    q = a / safe_a[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(q > 0, q * np.log(q), 0.0)
    entropy = -plogp.sum(1) / np.log(h * w) if h * w > 1 else np.zeros(n)
    ranks = 2 * np.arange(1, h * w + 1) - h * w - 1
    gini = (np.sort(a, axis=1) * ranks).sum(1) / (h * w * safe_a)

    yc = (np.arange(h) + 0.5) / h
    xc = (np.arange(w) + 0.5) / w
    flat = s.reshape(n, -1).argmax(1)
    peak_y, peak_x = yc[flat // w], xc[flat % w]
    row_mass, col_mass = p.sum(2), p.sum(1)
    com_y = (row_mass * yc).sum(1) / safe_p
    com_x = (col_mass * xc).sum(1) / safe_p
    var = (
        (row_mass * (yc[None] - com_y[:, None]) ** 2).sum(1)
        + (col_mass * (xc[None] - com_x[:, None]) ** 2).sum(1)
    ) / safe_p
    by, bx = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    inner = p[:, by : h - by, bx : w - bx].sum(axis=(1, 2)) if h > 2 * by and w > 2 * bx else 0
    border = (total_p - inner) / safe_p

    nan = np.full(n, np.nan)
    out: Columns = {
        "entropy": np.where(ok_a, entropy, nan),
        "gini": np.where(ok_a, gini, nan),
        "peak_y": np.where(finite, peak_y, nan),
        "peak_x": np.where(finite, peak_x, nan),
        "com_y": np.where(ok_p, com_y, nan),
        "com_x": np.where(ok_p, com_x, nan),
        "spread": np.where(ok_p, np.sqrt(var), nan),
        "border_share": np.where(ok_p, border, nan),
    }
    errors: list[str | None] = [
        "non-finite map: NaN or infinite values"
        if not finite[i]
        else "empty map: all values are zero"
        if not ok_a[i]
        else "no positive saliency: location and region statistics undefined"
        if not ok_p[i]
        else None
        for i in range(n)
    ]
    out["error"] = errors
    if regions:
        out.update(_region_statistics(s, a, p, ok_p, masks, regions, correct, ground_truth))
    return out


def _region_statistics(
    s: np.ndarray,
    a: np.ndarray,
    p: np.ndarray,
    ok_p: np.ndarray,
    masks: Sequence[np.ndarray | None] | None,
    regions: Sequence[str],
    correct: Sequence[bool | None] | None,
    ground_truth: Sequence[str] | None,
) -> Columns:
    n = s.shape[0]
    ids = region_columns(regions)
    gt_index = [k for k, r in enumerate(regions) if (r in ground_truth if ground_truth else k > 0)]
    share = np.full((n, len(regions)), np.nan)
    density = np.full((n, len(regions)), np.nan)
    si = np.full((n, 3), np.nan)
    patterns: list[str | None] = [None] * n
    for i in range(n):
        mask = None if masks is None else masks[i]
        if mask is None or not ok_p[i]:
            continue
        flat = mask.reshape(-1)
        counts = np.bincount(flat, minlength=len(regions))[: len(regions)]
        mass = np.bincount(flat, weights=p[i].reshape(-1), minlength=len(regions))[: len(regions)]
        share[i] = mass / mass.sum()
        area = counts / flat.size
        with np.errstate(divide="ignore", invalid="ignore"):
            density[i] = np.where(counts > 0, share[i] / area, np.nan)
        g = np.isin(flat, gt_index)
        if not g.any():
            continue
        ai = a[i]
        sal = ai >= ai.mean() + ai.std()
        inter = float((g & sal).sum())
        si[i] = (inter / float((g | sal).sum()), float(ai[g].sum() / ai.sum()), inter / g.sum())
        known = None if correct is None else correct[i]
        patterns[i] = si_pattern(si[i, 0], si[i, 1], si[i, 2], known)
    out: Columns = {}
    for k, r in enumerate(regions):
        out[f"share_{ids[r]}"] = share[:, k]
    for k, r in enumerate(regions):
        out[f"density_{ids[r]}"] = density[:, k]
    out["si_iou"], out["si_saliency_coverage"], out["si_ground_truth_coverage"] = si.T
    out["si_pattern"] = patterns
    return out
