"""When to stop recording failures and stop the audit instead.

One image that breaks the model (or a method) is recorded in its row and the run goes on. But
a model or method that fails on *every* image is a setup mistake, not a finding: recording it
for a whole dataset wastes the run. Rule: if the first :data:`GIVE_UP_AFTER` images that reach
the model in a process all fail (in the model, or in one method), the audit stops with one
line quoting the first reason. Until the model and every method have worked on some image,
computed batches are held back rather than saved, so a stopped audit records none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from salience.errors import SalienceError

GIVE_UP_AFTER = 16
MODEL = "the model"


class FailureTally:
    """Per component (the model, each method): images it worked on, failed on, first reason."""

    def __init__(self, methods: Iterable[str]) -> None:
        self.names = [MODEL, *(f"method {m}" for m in methods)]
        self.worked = dict.fromkeys(self.names, 0)
        self.failed = dict.fromkeys(self.names, 0)
        self.first: dict[str, str] = {}

    def add(self, name: str, worked: int, reasons: Iterable[str]) -> None:
        reasons = list(reasons)
        self.worked[name] += worked
        self.failed[name] += len(reasons)
        if reasons:
            self.first.setdefault(name, reasons[0])

    def add_batch(
        self, reached: int, model_errors: Mapping[int, str], errors: Mapping[str, Mapping[int, str]]
    ) -> None:
        """One batch: ``reached`` images went to the model, these failed."""
        self.add(MODEL, reached - len(model_errors), model_errors.values())
        ran = reached - len(model_errors)
        for method, failed in errors.items():
            self.add(f"method {method}", ran - len(failed), failed.values())

    @property
    def proven(self) -> bool:
        """The model and every method have worked on at least one image."""
        return all(self.worked[n] > 0 for n in self.names)

    def check(self) -> None:
        """Raise :class:`SalienceError` if a component failed on its first images, all of them."""
        for name in self.names:
            if self.worked[name] == 0 and self.failed[name] >= GIVE_UP_AFTER:
                fix = (
                    "check the model and its input size"
                    if name == MODEL
                    else ("check its parameters or leave it out")
                )
                raise SalienceError(
                    f"{name} failed on each of the first {self.failed[name]} images "
                    f"({self.first[name]}); {fix}, then rerun"
                )
