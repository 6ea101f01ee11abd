"""xrdflow: lazy, parallel reduction of in-situ X-ray diffraction.

Raw detector frames -> raw NeXus -> dask arrays -> pyFAI integration -> batch Gaussian
fits -> xarray Dataset(frame, [azimuth,] peak) of positions, d-spacings, widths and
lattice strains, written as NeXus.

The public names are imported lazily (PEP 562), so ``import xrdflow`` stays fast and a
user who only ingests frames never pays for importing pymatgen or pyFAI.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xrdflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "ingest": "ingest",
    "open_frames": "nexus",
    "Geometry": "geometry",
    "calibrate": "calibrate",
    "integrate": "integrate",
    "write_patterns": "integrate",
    "open_patterns": "integrate",
    "reflections": "crystal",
    "fit_peaks": "peaks",
    "read_patterns": "peaks",
    "lattice_strain": "strain",
    "write_result": "results",
    "open_result": "results",
    "sweep": "sweep",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'xrdflow' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"xrdflow.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``xrdflow.ingest`` (and the like) the public function.

    Importing the submodule ``xrdflow.ingest`` makes Python bind it as an attribute of the
    package, which would shadow the function of the same name; here the function wins.
    The submodule stays reachable as ``sys.modules["xrdflow.ingest"]``.
    """

    def __setattr__(self, name, value):
        if (
            isinstance(value, types.ModuleType)
            and _EXPORTS.get(name) == name
            and value.__name__ == f"{__name__}.{name}"
            and hasattr(value, name)
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
