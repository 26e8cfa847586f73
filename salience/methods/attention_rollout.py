"""Attention rollout (Abnar & Zuidema, 2020, ACL, arXiv:2005.00928)."""

from __future__ import annotations

import torch

from salience.methods._attention import AttentionMethod
from salience.methods._registry import register_method


@register_method
class AttentionRollout(AttentionMethod):
    """Head-averaged attention plus the residual identity, row-normalised, multiplied through
    the blocks; the classifier token's row is the map. Class-agnostic: the target is only
    checked."""

    name = "attention_rollout"
    passes = "1 fwd"
    needs_grad = False

    def relevance(self, attn: list[torch.Tensor], grads: list[torch.Tensor] | None) -> torch.Tensor:
        rollout: torch.Tensor | None = None
        for a in attn:
            mixed = a.mean(1) + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed if rollout is None else mixed @ rollout
        assert rollout is not None
        return rollout
