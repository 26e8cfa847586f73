"""Shared test check: two audit runs hold the same samples, statistics and maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from salience.store import Run


def assert_same_run(a: Run, b: Run, methods: Sequence[str]) -> None:
    """``a`` and ``b`` are complete and equal, and ``a``'s files match their checksums."""
    assert a.status == b.status == "complete"
    pd.testing.assert_frame_equal(a.samples(), b.samples())
    ids = a.samples()["sample_id"].tolist()
    for method in methods:
        pd.testing.assert_frame_equal(a.stats(method), b.stats(method))
        np.testing.assert_array_equal(a.saliencies(ids, method), b.saliencies(ids, method))
    a.verify()
