"""User-facing errors: one clear line saying what is wrong and what to do."""

from __future__ import annotations

import difflib


class SalienceError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, without traceback."""


class UnknownNameError(SalienceError, KeyError):
    """A registry lookup for a name that does not exist."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]!r}? " if close else ""
        super().__init__(f"unknown {kind} {name!r}; {hint}choose one of: {', '.join(known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class UnsupportedModelError(SalienceError):
    """The method cannot be applied to this model, for a stated reason."""


class DamagedRunError(SalienceError):
    """A run file is truncated or corrupt; the message names the file and how to repair it."""


class ImageTooLargeError(SalienceError):
    """An image whose decoded or resized size exceeds the safety caps; it is recorded, not read."""


class SalienceWarning(UserWarning):
    """Something the user must know that does not stop the work; the CLI prints it as one line."""
