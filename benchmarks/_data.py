"""Where the benchmarks find the shared ImageNet photos (``../shared`` beside the checkout)."""

from __future__ import annotations

from pathlib import Path

IMAGENET_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
