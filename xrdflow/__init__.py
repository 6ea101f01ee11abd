"""xrdflow: lazy, parallel reduction of in-situ X-ray diffraction.

Raw detector frames -> raw NeXus -> dask arrays -> pyFAI integration -> batch peak fits
-> xarray Dataset(frame, [azimuth,] peak) of positions, d-spacings, widths and lattice
strains, written as NeXus; and geometry sweeps that plan an experiment.

The public names live in private implementation modules (``xrdflow._ingest``,
``xrdflow._integrate``...) and are re-exported here, so no module shares a public
function's name and ``import xrdflow.x`` never shadows anything. They are imported lazily
(PEP 562): ``import xrdflow`` stays fast, and a user who only ingests frames never pays
for importing pymatgen or pyFAI.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._lazy import lazy_exports

try:
    __version__ = version("xrdflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "ingest": "_ingest",
    "BadFrameError": "_ingest",
    "open_frames": "nexus.raw",
    "Geometry": "geometry",
    "calibrate": "_calibrate",
    "CalibrationResult": "_calibrate",
    "CalibrationWarning": "_calibrate",
    "integrate": "_integrate",
    "sectors_around_axis": "_integrate",
    "write_patterns": "nexus.azint",
    "open_patterns": "nexus.azint",
    "reflections": "crystal",
    "select_reflections": "crystal",
    "fit_peaks": "_peaks",
    "read_patterns": "nexus.text",
    "lattice_strain": "_strain",
    "strain_tensor": "_strain",
    "diffraction_elastic_constants": "_elastic",
    "write_result": "nexus.peaks",
    "open_result": "nexus.peaks",
    "sweep": "_sweep",
    "sweep_table": "_plan",
    "plan": "_plan",
    "plan_table": "_plan",
    "write_sweep": "nexus.sweep",
    "crl_optics": "_crl",
    "Goniometer": "_goniometer",
    "goniometer": "_goniometer",
    "read_lens": "_crl",
    "write_report": "report",
    "Session": "session",
    "load_session": "session",
    "save_session": "session",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
