"""Packages whose modules are found by name (face detectors, brokers): a module added to such a
package is one more choice, with no list to edit."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

BROKERS = "inference.api.brokers"
DETECTORS = "inference.serve.detectors"


def module_names(package: str) -> list[str]:
    """The modules of ``package`` (imported only to find its folders; its modules are not)."""
    return sorted(info.name for info in pkgutil.iter_modules(importlib.import_module(package).__path__))


def known(package: str, name: str, what: str) -> str:
    """``name`` if it is a module of ``package``, else a ValueError that names the choices."""
    names = module_names(package)
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; use one of {names}")
    return name


def load(package: str, name: str, what: str) -> ModuleType:
    """The module ``name`` of ``package`` (a ValueError when there is none)."""
    return importlib.import_module(f"{package}.{known(package, name, what)}")
