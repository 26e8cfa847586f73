"""Can saliency statistics tell attacked images from clean ones? (the idea behind Tao et al.'s
AmI, NeurIPS 2018, tested in its simplest form)

A ridge logistic regression on a few statistics of each map (entropy, Gini, peak share,
spread, border share), scored on held-out images: grouped k-fold cross-validation keeps an
image's clean and attacked versions in the same fold, so no image is seen in training and
testing. ROC AUC of the out-of-fold scores, with a bootstrap interval over images. The same
detector on softmax features alone (top probability, entropy, margin) is the baseline
("black-box shift detection", Rabanser et al., NeurIPS 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize

from salience.attack._stats import bootstrap, roc_auc
from salience.audit.stats import map_statistics

SALIENCY_FEATURES = ("entropy", "gini", "peak_share", "spread", "border_share")
SOFTMAX_FEATURES = ("top_probability", "entropy", "margin")


def peak_share(maps: np.ndarray) -> np.ndarray:
    """Largest ``|map|`` value over the map's total ``|map|``: 1 = all on one pixel."""
    a = np.abs(np.asarray(maps, dtype=np.float64)).reshape(len(maps), -1)
    return a.max(1) / np.maximum(a.sum(1), 1e-300)


def saliency_features(maps: np.ndarray) -> np.ndarray:
    """``[N, 5]`` statistics of maps ``[N, H, W]`` (NaN replaced by 0)."""
    stats = map_statistics(np.abs(maps))
    cols = [np.asarray(stats[c], float) for c in ("entropy", "gini")]
    cols.append(peak_share(maps))
    cols += [np.asarray(stats[c], float) for c in ("spread", "border_share")]
    return np.nan_to_num(np.stack(cols, 1))


def softmax_features(logits: np.ndarray) -> np.ndarray:
    """``[N, 3]``: top probability, entropy and top-1 minus top-2 probability."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    top2 = np.sort(p, 1)[:, -2:]
    entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(1)
    return np.stack([top2[:, 1], entropy, top2[:, 1] - top2[:, 0]], 1)


def _fit(x: np.ndarray, y: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Weights (bias last) of an L2-penalised logistic regression."""
    xb = np.hstack([x, np.ones((len(x), 1))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ w
        nll = np.logaddexp(0, z).sum() - (y * z).sum() + 0.5 * ridge * (w[:-1] ** 2).sum()
        p = 1 / (1 + np.exp(-z))
        grad = xb.T @ (p - y)
        grad[:-1] += ridge * w[:-1]
        return float(nll), grad

    return np.asarray(minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x)


def held_out_scores(
    clean: np.ndarray, attacked: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold detector scores of the clean and the attacked version of each image."""
    n = len(clean)
    fold = np.random.default_rng(seed).permutation(n) % max(2, min(folds, n))
    s_clean, s_attacked = np.zeros(n), np.zeros(n)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        x = np.vstack([clean[train], attacked[train]])
        y = np.r_[np.zeros(train.sum()), np.ones(train.sum())]
        mu, sd = x.mean(0), x.std(0) + 1e-12
        w = _fit((x - mu) / sd, y)
        s_clean[test] = ((clean[test] - mu) / sd) @ w[:-1] + w[-1]
        s_attacked[test] = ((attacked[test] - mu) / sd) @ w[:-1] + w[-1]
    return s_clean, s_attacked


def detector_auc(clean: np.ndarray, attacked: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Held-out ROC AUC of telling ``attacked`` from ``clean`` features (paired rows)."""
    n = len(clean)
    if n < 4:
        return {"auc": None, "interval": [None, None], "n": n}
    sc, sa = held_out_scores(clean, attacked, seed=seed)

    def auc(idx: np.ndarray) -> float:
        return roc_auc(np.r_[sc[idx], sa[idx]], np.r_[np.zeros(len(idx)), np.ones(len(idx))])

    full = auc(np.arange(n))
    return {"auc": full, "interval": list(bootstrap(auc, n, seed=seed)), "n": n}
