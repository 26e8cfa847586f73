"""Noisy linear imputation for ROAD (Rong, Leemann et al., 2022, ICML, arXiv:2202.00449).

Each removed pixel becomes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonals; neighbours outside the image are dropped), solved jointly
for all removed pixels, and then Gaussian noise is added. Per channel this is the sparse system

    d_i v_i - sum_{j removed} w_ij v_j = sum_{j kept} w_ij x_j    for every removed pixel i,

with ``d_i`` the weight of i's in-image neighbours: a graph Laplacian with the kept pixels as
boundary values, symmetric positive definite whenever each hole touches a kept pixel.

Instead of one sparse factorisation per image and channel (the reference uses scipy's spsolve),
all images, channels and percentages of a batch are solved at once on the device by conjugate
gradients, with the stencil applied as shifted sums. Plain CG needs about as many iterations as
a hole is wide (hundreds on 224 px images), so it is preconditioned by one multigrid V-cycle:
damped Jacobi smoothing, cell-centred bilinear interpolation P and restriction P^T (so the
preconditioner stays symmetric) and the same stencil re-discretised on each coarser grid, where
a coarse pixel is unknown when any of its four children is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_COARSEST = 6  # stop coarsening below this size
_SMOOTH = 1  # Jacobi sweeps before and after the coarse correction
_OMEGA = 0.8  # Jacobi damping
_COARSE_SWEEPS = 30


def impute(
    x: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> torch.Tensor:
    """Images ``x`` ``[R, C, H, W]`` with the pixels where ``removed`` ``[R, H, W]`` is true
    replaced by their noisy linear imputation; ``tol`` is CG's relative residual target.
    The noise is ``noise * eps`` with ``eps`` standard normal (drawn from ``generator`` if not
    given)."""
    m = removed.to(x.dtype)[:, None]
    solved = harmonic_fill(x, m, tol=tol, max_iter=max_iter)
    if noise > 0:
        if eps is None:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        solved = solved + noise * eps * m
    return solved


def harmonic_fill(
    x: torch.Tensor, m: torch.Tensor, *, tol: float = 1e-5, max_iter: int = 200
) -> torch.Tensor:
    """Solve the imputation system (to relative residual ``tol``); ``m`` ``[N, 1, H, W]`` is 1
    on removed pixels."""
    levels = _hierarchy(m[:, :1].contiguous())  # one mask per image, shared by its channels
    return _pcg(x, levels, tol, max_iter)


def _blur(v: torch.Tensor) -> torch.Tensor:
    """The 3x3 [1,2,1] x [1,2,1] blur with zero padding, as separable shifted sums: an integer
    separable stencil needs four additions per pixel, no weight tensor and no grouping by
    channel, which costs less than a general conv2d. The stencil is w = (blur - 4 delta) / 12."""
    p = F.pad(v, (1, 1, 1, 1))
    rows = torch.add(p[..., :-2, :] + p[..., 2:, :], p[..., 1:-1, :], alpha=2)
    return torch.add(rows[..., :-2] + rows[..., 2:], rows[..., 1:-1], alpha=2)


def _neighbours(v: torch.Tensor) -> torch.Tensor:
    """sum_j w_ij v_j over the in-image 8-neighbourhood."""
    return (_blur(v) - 4 * v) / 12


class _Level:
    """One grid: mask of unknown pixels and the operator A v = m (d v - w * v), where d is
    the in-image neighbour weight, rewritten as ``m (d + 1/3) v - (m / 12) blur(v)``."""

    def __init__(self, m: torch.Tensor) -> None:
        self.m = m
        d = _neighbours(torch.ones_like(m[:1]))
        self.diag = m * (d + 1 / 3)
        self.off = m / 12
        self.step = _OMEGA * m / d  # damped Jacobi: z += step * (r - A z)

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """A v on the unknown pixels (v must be 0 elsewhere)."""
        return torch.addcmul(self.diag * v, self.off, _blur(v), value=-1)

    def jacobi(self, z: torch.Tensor, r: torch.Tensor, sweeps: int) -> torch.Tensor:
        for _ in range(sweeps):  # z += step * (r - A z), with A z fused into the residual
            residual = torch.addcmul(r, self.diag, z, value=-1).addcmul_(self.off, _blur(z))
            z = torch.addcmul(z, self.step, residual)
        return z


def _hierarchy(m: torch.Tensor) -> list[_Level]:
    levels = [_Level(m)]
    while min(levels[-1].m.shape[-2:]) >= 2 * _COARSEST:
        fine = levels[-1].m
        h, w = fine.shape[-2:]
        levels.append(_Level(-F.max_pool2d(-F.pad(fine, (0, w % 2, 0, h % 2)), 2)))
    return levels


def _shift(t: torch.Tensor, axis: int, by: int, fill: bool = True) -> torch.Tensor:
    """``t`` moved by ``by`` (+1: element i takes i-1; -1: element i takes i+1) along ``axis``;
    the vacated end repeats the edge (``fill``) or is zero."""
    n = t.shape[axis]
    edge = t.narrow(axis, 0 if by > 0 else n - 1, 1)
    pad = edge if fill else torch.zeros_like(edge)
    if by > 0:
        return torch.cat([pad, t.narrow(axis, 0, n - 1)], axis)
    return torch.cat([t.narrow(axis, 1, n - 1), pad], axis)


def _prolong(c: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """P: cell-centred bilinear interpolation to twice the size (edges replicated, so constants
    are kept up to the image border), cropped to ``h x w``."""
    for axis in (-1, -2):
        even = 0.75 * c + 0.25 * _shift(c, axis, 1)  # fine 2i   <- coarse i and i-1
        odd = 0.75 * c + 0.25 * _shift(c, axis, -1)  # fine 2i+1 <- coarse i and i+1
        c = torch.stack([even, odd], dim=axis).flatten(axis - 1, axis)
    return c[..., :h, :w]


def _restrict(f: torch.Tensor) -> torch.Tensor:
    """P^T, the exact adjoint of :func:`_prolong`."""
    h, w = f.shape[-2:]
    f = F.pad(f, (0, w % 2, 0, h % 2))
    for axis in (-1, -2):
        fe = f[..., 0::2] if axis == -1 else f[..., 0::2, :]
        fo = f[..., 1::2] if axis == -1 else f[..., 1::2, :]
        k = fe.shape[axis]
        c = 0.75 * (fe + fo) + 0.25 * (_shift(fo, axis, 1, False) + _shift(fe, axis, -1, False))
        first = c.narrow(axis, 0, 1) + 0.25 * fe.narrow(axis, 0, 1)
        last = c.narrow(axis, k - 1, 1) + 0.25 * fo.narrow(axis, k - 1, 1)
        if k == 1:
            f = first + 0.25 * fo
        else:
            f = torch.cat([first, c.narrow(axis, 1, k - 2), last], axis)
    return f


def _vcycle(levels: list[_Level], r: torch.Tensor, k: int = 0) -> torch.Tensor:
    level = levels[k]
    z = level.step * r
    if k == len(levels) - 1:
        return level.jacobi(z, r, _COARSE_SWEEPS - 1)
    z = level.jacobi(z, r, _SMOOTH - 1)
    coarse = levels[k + 1]
    rc = coarse.m * _restrict(level.m * (r - level.apply(z)))
    zc = _vcycle(levels, rc, k + 1)
    z = z + level.m * _prolong(coarse.m * zc, *r.shape[-2:])
    return level.jacobi(z, r, _SMOOTH)


def _pcg(x: torch.Tensor, levels: list[_Level], tol: float, max_iter: int) -> torch.Tensor:
    """Multigrid-preconditioned CG on the removed pixels; kept pixels stay ``x``. Every image
    and channel is its own system: inner products reduce over the pixels only."""
    top = levels[0]
    kept = x * (1 - top.m)
    b = top.m * _neighbours(kept)
    tiny = torch.finfo(x.dtype).tiny
    v = torch.zeros_like(x)
    r = b.clone()
    z = _vcycle(levels, r)
    p = z
    rz = (r * z).sum((2, 3), keepdim=True)
    limit = (tol * b.flatten(2).norm(dim=2)).clamp_min(tiny)[..., None, None]
    for _ in range(max_iter):
        ap = top.apply(p)
        pap = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(tiny), 0.0)
        v = v + alpha * p
        r = r - alpha * ap
        if bool((r.flatten(2).norm(dim=2)[..., None, None] <= limit).all()):
            break
        z = _vcycle(levels, r)
        rz_new = (r * z).sum((2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(tiny), 0.0)
        p = z + beta * p
        rz = rz_new
    return kept + v
