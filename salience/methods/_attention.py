"""Shared machinery of the attention family: record every block's attention probabilities
(and, for gradient-weighted rules, the target score's gradient with respect to them), fold
them into a token-to-token relevance matrix, and read the classifier's rows as a patch map.

The attention is read through :mod:`salience.models.attention` for torchvision, timm and
Hugging Face vision transformers; a model without attention blocks is refused in one line.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import nn

from salience.methods._base import Attribution, ExplainJob
from salience.methods.batching import Kind, spans
from salience.models.attention import (
    AttentionBlocks,
    find_attention,
    recorded_attention,
    require_attention,
    token_prefix_of,
)
from salience.models.layers import tokens_to_grid


class AttentionMethod(Attribution):
    """A map from a relevance matrix ``[N, T, T]`` built from all blocks' attention.

    Subclasses implement :meth:`relevance` from per-block probabilities ``[N, heads, T, T]``
    (and their gradients when ``needs_grad``).
    """

    family = "attention"
    signed = False
    needs = "global attention (ViT, DeiT; not Swin)"
    needs_grad: ClassVar[bool]

    @classmethod
    def unsupported(cls, model: nn.Module) -> str | None:
        if find_attention(model) is None:
            return f"{cls.name} needs a transformer with attention blocks; this model has none"
        return None

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        blocks = require_attention(job.model, self.name)
        index = job.rows()
        kind: Kind = "backward" if self.needs_grad else "forward"
        return torch.cat(
            [
                self._maps(job, blocks, job.x[a:b], index[a:b])
                for a, b in spans(job.n, job.chunk(kind))
            ]
        )

    def _maps(
        self, job: ExplainJob, blocks: AttentionBlocks, x: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        inp = x.detach().requires_grad_(self.needs_grad)
        with recorded_attention(blocks) as store, torch.set_grad_enabled(self.needs_grad):
            logits = job.logits(inp)
            scores = job.target_scores(logits, index, clean=True)  # also checks the target
            grads = (
                torch.autograd.grad(scores.sum(), [a.node for a in store])
                if self.needs_grad
                else None
            )
        n, (height, width) = x.shape[0], x.shape[-2:]
        prefix = token_prefix_of(job.model, store, n, height, width, self.name)
        attn = [a.heads for a in store]
        grad = (
            None if grads is None else [a.grad_heads(g) for a, g in zip(store, grads, strict=True)]
        )
        relevance = self.relevance(attn, grad)
        rows = relevance[:, list(blocks.readout)] if blocks.readout else relevance[:, prefix:]
        return tokens_to_grid(rows.mean(1).unsqueeze(-1), prefix, height, width)[:, 0]

    @abstractmethod
    def relevance(self, attn: list[torch.Tensor], grads: list[torch.Tensor] | None) -> torch.Tensor:
        """Token-to-token relevance ``[N, T, T]`` from the blocks' attention, first block first."""
