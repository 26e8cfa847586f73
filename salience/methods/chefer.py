"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, 2021, ICCV, "Generic
attention-model explainability for interpreting bi-modal and encoder-decoder transformers",
arXiv:2103.15679), self-attention rules."""

from __future__ import annotations

import torch

from salience.methods._attention import AttentionMethod
from salience.methods._registry import register_method


@register_method
class Chefer(AttentionMethod):
    """Relevance R = I updated block by block as R += mean_heads((grad * attention)^+) @ R,
    with the target score's gradient; the classifier token's row is the map."""

    name = "chefer"
    passes = "1 fwd+bwd"
    needs_grad = True

    def relevance(self, attn: list[torch.Tensor], grads: list[torch.Tensor] | None) -> torch.Tensor:
        assert grads is not None
        n, _, tokens, _ = attn[0].shape
        eye = torch.eye(tokens, dtype=attn[0].dtype, device=attn[0].device)
        relevance = eye.expand(n, tokens, tokens).clone()
        for a, g in zip(attn, grads, strict=True):
            weighted = (g * a).clamp_min(0).mean(1)
            relevance = relevance + weighted @ relevance
        return relevance
