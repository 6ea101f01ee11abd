"""Patterns reduced elsewhere, as text: Dioptas ``.xy``, pyFAI ``.dat``, xrdfit caked ``.dat``."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

from ..units import DEGREE, INTENSITY, RADIAL_UNITS, wavelength_to_energy

__all__ = ["read_patterns"]

_WL_RE = re.compile(r"wavelength\s*[:=]\s*([0-9.eE+-]+)\s*(m|A|nm)?", re.IGNORECASE)


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _expand(path_or_paths) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        p = Path(path_or_paths)
        if p.is_dir():
            files = [q for q in p.iterdir() if q.suffix.lower() in (".xy", ".dat", ".txt", ".chi")]
        elif any(c in str(p) for c in "*?["):
            files = [Path(q) for q in glob.glob(str(p))]
        else:
            files = [p]
        files = sorted(files, key=lambda q: _natural_key(q.name))
    else:
        files = [Path(q) for q in path_or_paths]
    if not files:
        raise FileNotFoundError(f"path_or_paths: no pattern files found at {path_or_paths!r}")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such pattern file")
    return files


def _read_text(path: Path) -> tuple[np.ndarray, str | None, float | None]:
    """(table, unit from the header, wavelength in Angstrom from the header)."""
    unit = None
    wl = None
    header = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            s = line.strip()
            if not s:
                continue
            if s[0] in "#!;%":
                header.append(s.lstrip("#!;% ").strip())
                continue
            break
    for h in header:
        m = _WL_RE.search(h)
        if m:
            value = float(m.group(1))
            u = m.group(2)
            if u == "nm":
                wl = value * 10
            elif u == "A":
                wl = value
            else:  # pyFAI writes metres (1.393e-11 m) or a bare number in metres
                wl = value * 1e10 if value < 1e-6 else value
        tokens = h.split()
        if tokens and tokens[0] in RADIAL_UNITS:
            unit = tokens[0]
    try:
        table = np.loadtxt(path, comments=("#", "!", ";", "%"), ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric pattern table ({exc})") from None
    if table.shape[1] < 2 or table.shape[0] < 3:
        raise ValueError(f"{path}: expected >= 3 rows and >= 2 columns, got {table.shape}")
    return table, unit, wl


def read_patterns(
    path_or_paths,
    *,
    unit: str | None = None,
    wavelength_a: float | None = None,
    azimuth: Sequence[float] | None = None,
) -> xr.DataArray:
    """Read 1-D patterns reduced elsewhere (Dioptas ``.xy``, xrdfit caked ``.dat``, text).

    Each file is a whitespace-separated table: the radial position in column 0, then one
    intensity column (a 1-D pattern) or several (azimuthal cakes, as xrdfit writes them).
    ``#`` header lines are read for the unit (``2th_deg``, ``q_nm^-1``... as pyFAI/Dioptas
    write it) and the wavelength (``Wavelength: 3.344e-11`` in metres). Several files become
    frames, in natural order of their names when a folder or glob is given.

    Parameters
    ----------
    path_or_paths : str, path or sequence of paths
        A file, a folder, a glob pattern or a list of files (one frame each).
    unit : str, optional
        pyFAI radial unit of column 0 (``"2th_deg"``, ``"2th_rad"``, ``"q_nm^-1"``,
        ``"q_A^-1"``, ``"r_mm"``); required when the header does not say.
    wavelength_a : float, optional
        Wavelength in Angstrom (overrides the header).
    azimuth : sequence of float, optional
        Sector centres in degrees for multi-column (caked) files; by default equal
        sectors covering -180..180 degrees, in column order.

    Returns
    -------
    xr.DataArray
        Dims ``(frame, radial)`` or ``(frame, azimuth, radial)``; coord ``file`` on frame;
        attrs ``radial_unit``, ``wavelength_a`` (when known), ``energy_kev``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.xy"
    >>> _ = f.write_text("# 2th_deg I\\n1.0 5\\n1.1 7\\n1.2 6\\n")
    >>> read_patterns(f).dims
    ('frame', 'two_theta')
    """
    files = _expand(path_or_paths)
    if unit is not None and unit not in RADIAL_UNITS:
        raise ValueError(f"unit: {unit!r} is not one of {sorted(RADIAL_UNITS)}")
    if wavelength_a is not None and not (wavelength_a > 0):
        raise ValueError(f"wavelength_a: must be > 0, got {wavelength_a!r}")
    tables = []
    units = set()
    wls = set()
    for f in files:
        table, u, wl = _read_text(f)
        tables.append(table)
        units.add(u)
        if wl is not None:
            wls.add(round(wl, 12))
    if unit is None:
        found = {u for u in units if u is not None}
        if len(found) != 1:
            raise ValueError(
                f"unit: the file headers give {sorted(found) or 'no'} radial unit; pass unit= "
                f"(e.g. '2th_deg' or 'q_nm^-1')"
            )
        unit = found.pop()
    if wavelength_a is None and len(wls) == 1:
        wavelength_a = wls.pop()
    shape = tables[0].shape
    x = tables[0][:, 0]
    for f, t in zip(files, tables):
        if t.shape != shape or not np.allclose(t[:, 0], x, rtol=1e-9, atol=0):
            raise ValueError(f"{f}: its radial grid or column count differs from {files[0]}")
    data = np.stack([t[:, 1:] for t in tables])  # frame, radial, ncol
    dim, runits = RADIAL_UNITS[unit].dim, RADIAL_UNITS[unit].units
    ncol = data.shape[2]
    coords: dict[str, Any] = {
        dim: (dim, x, {"units": runits, "long_name": dim.replace("_", " ")}),
        "frame": np.arange(len(files)),
        "file": ("frame", np.asarray([f.name for f in files], dtype=str)),
    }
    if ncol == 1:
        arr = xr.DataArray(data[:, :, 0], dims=("frame", dim), coords=coords)
    else:
        if azimuth is None:
            az = -180.0 + (np.arange(ncol) + 0.5) * 360.0 / ncol
        else:
            az = np.asarray(azimuth, dtype=float)
            if az.shape != (ncol,):
                raise ValueError(f"azimuth: expected {ncol} sector centres, got shape {az.shape}")
        coords["azimuth"] = ("azimuth", az, {"units": DEGREE, "long_name": "sector centre"})
        coords["sector"] = ("azimuth", np.asarray([f"cake {i + 1}" for i in range(ncol)]))
        arr = xr.DataArray(data.transpose(0, 2, 1), dims=("frame", "azimuth", dim), coords=coords)
    arr.attrs = {"long_name": "intensity", "units": INTENSITY, "radial_unit": unit}
    if wavelength_a is not None:
        arr.attrs["wavelength_a"] = float(wavelength_a)
        arr.attrs["energy_kev"] = wavelength_to_energy(float(wavelength_a))
    arr.attrs["source_file"] = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
    return arr
