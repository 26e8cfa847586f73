"""Spectral relevance analysis (SpRAy; Lapuschkin et al., 2019, Nat. Commun. 10:1096).

Per class: downsample each saliency map and normalise it to sum 1, connect every map to its
``k`` nearest neighbours (Euclidean; symmetric binary kNN graph as in CoRelAy's
``SparseKNN``), take the smallest eigenvalues of the symmetric normalised Laplacian
``I - D^-1/2 A D^-1/2``, choose the number of clusters at the largest eigengap, and cluster
the row-normalised spectral embedding with k-means (Ng, Jordan & Weiss, NIPS 2001).
Above ``max_points`` maps a seeded random sample is clustered and every other map joins the
cluster with the nearest mean map (a Nystrom-style extension that keeps big classes fast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as F

DENSE_LIMIT = 300  # above this many maps the eigenproblem is solved sparsely (faster)
BLOCK = 1024


@dataclass(frozen=True)
class Spray:
    """Cluster of every map, the Laplacian's smallest eigenvalues and the chosen count."""

    labels: np.ndarray  # int [n]
    eigenvalues: np.ndarray  # ascending
    k: int


def downsample(maps: np.ndarray, grid: int) -> np.ndarray:
    """``[n, h, w]`` maps -> ``[n, grid, grid]`` area means of their positive part (the
    absolute value where a map has no positive mass), each normalised to sum 1; an empty map
    becomes uniform."""
    x = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    pos = np.clip(x, 0, None)
    empty = pos.reshape(len(x), -1).sum(1) <= 0
    pos[empty] = np.abs(x[empty])
    small = F.adaptive_avg_pool2d(torch.from_numpy(pos)[:, None], grid)[:, 0].numpy()
    total = small.reshape(len(x), -1).sum(1)
    out = np.where(total[:, None, None] > 0, small / np.maximum(total, 1e-30)[:, None, None], 0)
    out[total <= 0] = 1.0 / (grid * grid)
    return out.astype(np.float64)


def knn_graph(features: np.ndarray, neighbors: int) -> scipy.sparse.csr_matrix:
    """Symmetric kNN affinity ``(K + K^T) / 2`` with binary edges, computed in blocks."""
    n = len(features)
    k = min(neighbors, n - 1)
    sq = (features**2).sum(1)
    rows, cols = [], []
    for start in range(0, n, BLOCK):
        part = features[start : start + BLOCK]
        d = sq[start : start + BLOCK, None] - 2 * part @ features.T + sq[None, :]
        idx = np.arange(len(part))
        d[idx, start + idx] = np.inf  # no self loops
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(start + idx, k))
        cols.append(nearest.reshape(-1))
    r, c = np.concatenate(rows), np.concatenate(cols)
    knn = scipy.sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    return ((knn + knn.T) * 0.5).tocsr()


def laplacian_spectrum(
    adjacency: scipy.sparse.csr_matrix, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenpairs of ``I - D^-1/2 A D^-1/2`` (ascending)."""
    n = adjacency.shape[0]
    deg = np.asarray(adjacency.sum(1)).ravel()
    dinv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    scale = scipy.sparse.diags(dinv)
    norm = (scale @ adjacency @ scale).tocsr()
    count = min(count, n)
    if n <= DENSE_LIMIT or count >= n - 1:
        vals, vecs = scipy.linalg.eigh(np.eye(n) - norm.toarray(), subset_by_index=[0, count - 1])
    else:
        v0 = np.full(n, 1.0 / np.sqrt(n))
        mu, vecs = scipy.sparse.linalg.eigsh(norm, k=count, which="LA", v0=v0)
        order = np.argsort(-mu)
        vals, vecs = 1.0 - mu[order], vecs[:, order]
    return np.clip(vals, 0.0, 2.0), vecs


def eigengap(eigenvalues: np.ndarray, max_clusters: int) -> int:
    """The number of clusters ``k`` (1..max_clusters) with the largest gap
    ``eigenvalues[k] - eigenvalues[k-1]``."""
    m = min(max_clusters, len(eigenvalues) - 1)
    if m < 1:
        return 1
    gaps = np.diff(eigenvalues[: m + 1])
    return int(np.argmax(gaps)) + 1


def kmeans(
    points: np.ndarray, k: int, seed: int = 0, restarts: int = 8, iters: int = 100
) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the labels of the restart with least inertia."""
    rng = np.random.default_rng(seed)
    n = len(points)
    best, best_inertia = np.zeros(n, dtype=np.int64), np.inf
    for _ in range(restarts):
        centres = [points[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((points[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            probs = d2 / total if total > 0 else np.full(n, 1.0 / n)
            centres.append(points[rng.choice(n, p=probs)])
        c = np.array(centres)
        labels = np.zeros(n, dtype=np.int64)
        for _ in range(iters):
            d2 = ((points[:, None] - c[None]) ** 2).sum(-1)
            new = d2.argmin(1)
            if _ > 0 and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = points[labels == j]
                if len(members):
                    c[j] = members.mean(0)
        inertia = float(((points - c[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return best


def spray(
    features: np.ndarray,
    *,
    neighbors: int = 10,
    max_clusters: int = 8,
    seed: int = 0,
    max_points: int | None = None,
) -> Spray:
    """Cluster flattened, normalised maps ``[n, d]`` (see the module docstring)."""
    n = len(features)
    if max_points is not None and n > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        part = spray(features[pick], neighbors=neighbors, max_clusters=max_clusters, seed=seed)
        labels = nearest_mean(features, features[pick], part.labels)
        labels[pick] = part.labels
        return Spray(labels, part.eigenvalues, part.k)
    if n < 4:
        return Spray(np.zeros(n, dtype=np.int64), np.zeros(min(n, 1)), 1)
    vals, vecs = laplacian_spectrum(knn_graph(features, neighbors), max(32, max_clusters + 1))
    k = eigengap(vals, max_clusters)
    if k == 1:
        return Spray(np.zeros(n, dtype=np.int64), vals, 1)
    emb = vecs[:, :k]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    labels = kmeans(emb, k, seed=seed)
    # number clusters by size, largest first, and drop empty ones
    sizes = np.bincount(labels, minlength=k)
    order = [j for j in np.argsort(-sizes, kind="stable") if sizes[j] > 0]
    remap = np.zeros(k, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return Spray(remap[labels], vals, len(order))


def nearest_mean(features: np.ndarray, sample: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each feature, the cluster of ``sample`` (labelled ``labels``) with the nearest mean."""
    k = int(labels.max()) + 1
    means = np.stack([sample[labels == j].mean(0) for j in range(k)])
    out = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(features), BLOCK * 16):
        part = features[start : start + BLOCK * 16]
        d = (part**2).sum(1)[:, None] - 2 * part @ means.T + (means**2).sum(1)[None]
        out[start : start + len(part)] = d.argmin(1)
    return out


def mass_centre(grid_map: np.ndarray) -> tuple[float, float]:
    """Centre of mass ``(y, x)`` of a non-negative map, as fractions of height and width."""
    h, w = grid_map.shape
    total = float(grid_map.sum()) or 1.0
    y = float((grid_map.sum(1) * (np.arange(h) + 0.5)).sum() / total / h)
    x = float((grid_map.sum(0) * (np.arange(w) + 0.5)).sum() / total / w)
    return y, x


def peak(grid_map: np.ndarray) -> tuple[float, float]:
    """The hottest cell ``(y, x)`` as fractions of height and width (cell centres)."""
    h, w = grid_map.shape
    i = int(np.argmax(grid_map))
    return (i // w + 0.5) / h, (i % w + 0.5) / w


def top_mass(grid_map: np.ndarray, fraction: float = 0.1) -> float:
    """Share of a map's mass in its hottest ``fraction`` of cells (concentration)."""
    flat = np.sort(grid_map.ravel())[::-1]
    total = float(flat.sum())
    if total <= 0:
        return 0.0
    return float(flat[: max(1, round(fraction * flat.size))].sum() / total)
