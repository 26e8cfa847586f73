"""The one registry of attribution methods: the CLI, API, docs and tests all read it."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from salience.errors import UnknownNameError

if TYPE_CHECKING:
    from torch import nn

    from salience.methods._base import Attribution

A = TypeVar("A", bound="type[Attribution]")

_METHODS: dict[str, type[Attribution]] = {}


@dataclass(frozen=True)
class MethodInfo:
    """What ``salience methods`` prints: the registry entry plus its parameters."""

    name: str
    family: str
    signed: bool
    passes: str
    summary: str
    params: dict[str, Any]
    needs: str = ""  # what a model must have for the method; "": any classifier


def register_method(cls: A) -> A:
    """Class decorator adding an :class:`Attribution` subclass under ``cls.name``."""
    if cls.name in _METHODS:
        warnings.warn(f"method {cls.name!r} registered twice; the later one wins", stacklevel=2)
    _METHODS[cls.name] = cls
    return cls


def list_methods(family: str | None = None, model: nn.Module | None = None) -> list[str]:
    """Registered method names, in registration order, optionally of one family and only
    those that can explain ``model`` (see ``Attribution.unsupported``)."""
    return [
        n
        for n, c in _METHODS.items()
        if (family is None or c.family == family)
        and (model is None or c.unsupported(model) is None)
    ]


def get_method(name: str) -> type[Attribution]:
    """The class registered under ``name``; an unknown name lists the known ones."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownNameError("method", name, list(_METHODS)) from None


def method_info(name: str) -> MethodInfo:
    cls = get_method(name)
    params = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind is p.KEYWORD_ONLY
    }
    first_paragraph = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
    summary = " ".join(first_paragraph.split())
    return MethodInfo(cls.name, cls.family, cls.signed, cls.passes, summary, params, cls.needs)
