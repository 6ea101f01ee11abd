"""Lazy re-exports (PEP 562) for a package's ``__init__``: a public name is imported from
its implementation module on first use, so importing the package stays fast."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in the modules
    named by ``exports`` (public name -> module, relative to the package); a name, once
    imported, is stored in ``namespace`` (the package's ``globals()``)."""
    public = sorted(exports)

    def __getattr__(name: str):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(public) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
