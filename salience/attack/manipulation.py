"""Targeted manipulation (Dombrowski et al., "Explanations can be manipulated and geometry is
to blame", NeurIPS 2019, arXiv:1906.07983): move a method's map towards a chosen target map
while the output stays put, and the same attack against their defence, the beta-smoothed
explanation (the map of the network with every ReLU replaced by ``softplus(beta)``).

Loss: ``mean((h(x') - h_t)^2) + gamma * ||softmax(f(x')) - softmax(f(x))||^2`` with maps
scaled to a mean ``|h|`` of 1, minimised with Adam inside an L-inf pixel budget (projected
and clipped to 0..1 after every step). ``h`` is the differentiable map through the surrogate;
the output term uses the real network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from salience.attack._maps import DIFFERENTIABLE, surrogate_for
from salience.attack._pixel import PixelModel
from salience.attack._surrogate import SoftplusSurrogate
from salience.models.layers import CamLayer


@dataclass(frozen=True)
class ManipulationConfig:
    eps: float = 8 / 255  # L-inf, pixel space
    steps: int = 30
    lr: float = 1 / 255  # Adam step, pixel units
    gamma: float = 10.0  # weight of the output term
    beta: float = 10.0  # surrogate used to attack the real map
    defence_beta: float = 2.0  # the beta-smoothed explanation (their defence)


def unit_map(maps: torch.Tensor) -> torch.Tensor:
    """``|maps|`` scaled to a mean of 1 per image."""
    a = maps.abs().flatten(1)
    return (a / a.mean(1, keepdim=True).clamp_min(1e-12)).view_as(maps)


def smoothed_map(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    beta: float,
    layer: CamLayer | None = None,
) -> torch.Tensor:
    """The beta-smoothed explanation of ``method`` (its differentiable form), detached."""
    with SoftplusSurrogate(beta):
        return DIFFERENTIABLE[surrogate_for(method)](pm, pixels.detach(), labels, layer).detach()


def manipulate(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor,
    method: str,
    config: ManipulationConfig,
    beta: float,
    layer: CamLayer | None = None,
) -> torch.Tensor:
    """Pixels within ``config.eps`` of ``pixels`` whose map (through ``softplus(beta)``)
    approaches ``target`` ``[N, H, W]`` while the real softmax stays close."""
    map_fn = DIFFERENTIABLE[surrogate_for(method)]
    goal = unit_map(target.detach())
    start = torch.softmax(pm.predict(pixels), 1)
    delta = torch.zeros_like(pixels, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=config.lr)
    for _ in range(config.steps):
        adv = (pixels + delta).clamp(0, 1)
        with SoftplusSurrogate(beta):
            h = map_fn(pm, adv, labels, layer)
        with torch.enable_grad():
            out = torch.softmax(pm(adv), 1)
            loss = ((unit_map(h) - goal) ** 2).flatten(1).mean(1)
            loss = loss + config.gamma * ((out - start) ** 2).sum(1)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
        delta.grad = grad
        opt.step()
        with torch.no_grad():
            delta.clamp_(-config.eps, config.eps)
            delta.copy_((pixels + delta).clamp(0, 1) - pixels)
    return (pixels + delta.detach()).clamp(0, 1)
