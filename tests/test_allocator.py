"""The CLI's allocator setting: freed tensors are reused instead of faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, torch
from salience.allocator import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(10):  # the heap settles over the first passes; a saliency run makes hundreds
    torch.ones(64 * 2**20 // 4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's largest dynamic mmap threshold
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"took": took, "faults": after - before}))
"""


def _probe(mode: str) -> dict[str, int | bool | None]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, int | bool | None] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = _probe("default"), _probe("keep")
    if not kept["took"]:
        pytest.skip("this C library has no mallopt (not glibc)")
    pages = 10 * 64 * 2**20 // 4096
    assert default["faults"] is not None and kept["faults"] is not None
    assert int(default["faults"]) > pages // 2  # every block faulted in again: the cost
    assert int(kept["faults"]) < pages // 4  # once settled, the heap keeps the blocks
