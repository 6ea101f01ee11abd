"""Every file layout xrdflow reads and writes, with one encoding.

- :mod:`.raw`: raw frames (``raw.nxs``) and their lazy reader;
- :mod:`.azint`: integrated patterns (NXazint1d / NXazint2d);
- :mod:`.peaks`: fitted peaks and strains (NXprocess + NXreflections, NXstress-style);
- :mod:`.sweep`: geometry sweeps (netCDF/HDF5);
- :mod:`.text`: patterns reduced elsewhere (Dioptas ``.xy``, pyFAI ``.dat``, xrdfit caked ``.dat``);
- :mod:`._codec`: groups, fields, attributes, provenance;
- :mod:`._atomic`: temporary name + rename, the one-writer lock, disk-full errors.
"""

from __future__ import annotations

from ._atomic import OutputLockedError, atomic_output, disk_full_errno, output_lock, partial_path
from ._codec import nx_group, provenance, read_attrs, write_field, write_process
from .raw import DETECTOR_PATH, FRAMES_CHUNK_BYTES, frames_per_chunk_for, open_frames

__all__ = [
    "OutputLockedError",
    "atomic_output",
    "output_lock",
    "partial_path",
    "disk_full_errno",
    "nx_group",
    "write_field",
    "write_process",
    "read_attrs",
    "provenance",
    "open_frames",
    "DETECTOR_PATH",
    "FRAMES_CHUNK_BYTES",
    "frames_per_chunk_for",
]
