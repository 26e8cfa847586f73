"""Where the shared real ImageNet photos are (tests using them skip cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
IMAGENET_SAMPLES = Path(
    os.environ.get("SALIENCE_IMAGENET_SAMPLES", SHARED / "data" / "imagenet-samples")
)
