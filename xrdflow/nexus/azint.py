"""Integrated patterns as NeXus: NXazint1d (NXazint2d with azimuthal sectors).

:func:`write_patterns` / :class:`PatternWriter` write them (a few frames at a time, so a
lazy run streams), :func:`open_patterns` reads them back into the same DataArray.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..units import ANGSTROM, INTENSITY, RADIAL_UNITS
from ._atomic import atomic_output
from ._codec import (as_str, is_variable, mark_variable, nx_group, read_variable, write_attrs, write_field,
                     write_process, write_variable)

__all__ = ["write_patterns", "open_patterns", "PatternWriter"]

def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_patterns(patterns, path_or_h5group, *, entry: str = "entry", batch_frames: int | None = None,
                   blocks_per_batch: int | None = None) -> None:
    """Write patterns from :func:`integrate` as an NXazint1d (NXazint2d with sectors) entry.

    Parameters
    ----------
    patterns : xarray.DataArray
        ``(frame, q)`` or ``(frame, azimuth, q)`` patterns (lazy ones are computed a few
        blocks at a time, so memory stays flat; HDF5 is written by this process only).
    path_or_h5group : path or h5py.Group
        Output file (written atomically) or an open group in which ``entry`` is created
        (as NXentry at a file root, NXsubentry elsewhere).
    entry : str
        Name of the entry group.
    batch_frames : int, optional
        Frames computed together (whole dask blocks, at least one) before they are written;
        by default 8 blocks at a time. ``blocks_per_batch=`` (in blocks) is deprecated.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tempfile, pathlib
    >>> p = xr.DataArray(np.ones((2, 3), np.float32), dims=("frame", "q"),
    ...                  coords={"q": ("q", [1.0, 2.0, 3.0], {"units": "1/nm"})},
    ...                  attrs={"radial_unit": "q_nm^-1", "wavelength_a": 0.5,
    ...                         "energy_kev": 24.8, "units": "arbitrary units"})
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "p.nxs"
    >>> write_patterns(p, out)
    >>> open_patterns(out).identical(p)
    True
    """
    import h5py
    import xarray as xr

    if blocks_per_batch is not None:
        import warnings

        warnings.warn("write_patterns(blocks_per_batch=...) is deprecated; use 'batch_frames' (in frames) "
                      "instead", DeprecationWarning, stacklevel=2)
    if batch_frames is not None:
        from ..options import positive_int

        batch_frames = positive_int(batch_frames, "batch_frames")
    if not isinstance(patterns, xr.DataArray):
        raise ValueError(f"patterns: expected an xarray.DataArray, got {type(patterns).__name__}")
    if isinstance(path_or_h5group, h5py.Group):
        parent = path_or_h5group
        cls = "NXentry" if parent.name == "/" else "NXsubentry"
        _write_entry(patterns, parent, entry, cls, batch_frames, blocks_per_batch)
        return
    path = Path(path_or_h5group)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["default"] = entry
            _write_entry(patterns, fh, entry, "NXentry", batch_frames, blocks_per_batch)


class PatternWriter:
    """Write patterns into an NXazint1d/NXazint2d entry a few frames at a time.

    The layout (instrument, NXprocess ``reduction``, NXdata with an empty ``I``) is made
    when the writer is created; :meth:`write` fills frames; :meth:`finish` adds the
    coordinates. :func:`write_patterns` uses it, and so does a run that computes patterns
    and peak fits together in one graph and streams both to disk.
    """

    def __init__(self, patterns, parent, entry_name: str = "entry", nx_class: str = "NXentry"):
        self.patterns = patterns
        attrs = dict(patterns.attrs)
        self.frame_dim = patterns.dims[0] if patterns.ndim >= 2 else None
        self.radial_dim = patterns.dims[-1]
        self.has_azimuth = patterns.ndim == 3
        unit = attrs.get("radial_unit", "q_nm^-1")
        self.nx_long = RADIAL_UNITS[unit].nexus_name if unit in RADIAL_UNITS else self.radial_dim
        definition = "NXazint2d" if self.has_azimuth else "NXazint1d"

        entry = nx_group(parent, entry_name, nx_class, default="data")
        write_field(entry, "definition", definition)
        write_field(entry, "solid_angle_applied", bool(attrs.get("correct_solid_angle", 0)))
        write_field(entry, "polarization_applied", bool(attrs.get("polarization_applied", 0)))
        write_field(entry, "normalization_applied", True)
        inst = nx_group(entry, "instrument", "NXinstrument")
        write_field(inst, "name", str(attrs.get("instrument", "unknown")))
        mono = nx_group(inst, "monochromator", "NXmonochromator")
        if "wavelength_a" in attrs:
            write_field(mono, "wavelength", float(attrs["wavelength_a"]), units=ANGSTROM)
        if "energy_kev" in attrs:
            write_field(mono, "energy", float(attrs["energy_kev"]), units="keV")
        src = nx_group(inst, "source", "NXsource")
        write_field(src, "name", str(attrs.get("facility", "unknown")))
        write_field(src, "type", "Synchrotron X-ray Source")
        write_field(src, "probe", "x-ray")

        params = {k: _jsonable(v) for k, v in attrs.items()
                  if isinstance(_jsonable(v), (str, int, float, bool))}
        proc = write_process(entry, "reduction", parameters=params,
                             note="xrdflow.integrate: pyFAI integrate1d per frame "
                                  "(per azimuthal sector for NXazint2d)")
        write_field(proc, "reference",
                    "pyFAI: Kieffer & Karkoulis, J. Phys.: Conf. Ser. 425 (2013) 202012; "
                    "Ashiotis et al., J. Appl. Cryst. 48 (2015) 510")

        data = nx_group(entry, "data", "NXdata", signal="I")
        data.attrs["interpretation"] = "image" if self.has_azimuth else "spectrum"
        data.attrs["axes"] = (["."] + (["azimuthal_axis"] if self.has_azimuth else []) + ["radial_axis"]
                              if self.frame_dim else ["radial_axis"])

        shape = tuple(int(s) for s in patterns.shape)
        if "I" in data:
            del data["I"]
        chunks = (1,) + shape[1:] if self.frame_dim and shape[0] > 0 else None
        self.dset = data.create_dataset("I", shape=shape, dtype=patterns.dtype, chunks=chunks,
                                        compression="gzip" if chunks else None)
        # the DataArray's own attrs, and NeXus' long_name/units where it has none
        for key, value in (("long_name", "intensity"), ("units", INTENSITY)):
            if key not in attrs:
                self.dset.attrs[key] = value
                self.dset.attrs[f"xarray_no_{key}"] = 1
        write_attrs(self.dset, attrs)
        mark_variable(self.dset, name=patterns.name, dims=patterns.dims, role="data")
        self.data = data

    def write(self, frames: slice, values) -> None:
        """Store computed patterns for the frames ``frames`` (positions along the frame dim)."""
        self.dset[frames] = values

    def write_all(self, batch_frames: int | None = None, blocks_per_batch: int | None = None) -> None:
        """Compute the patterns a few dask blocks at a time and store them: blocks are taken
        together until they hold ``batch_frames`` frames (default: 8 blocks at a time)."""
        import dask
        import dask.array as da

        arr = self.patterns.data
        if isinstance(arr, da.Array) and self.frame_dim:
            sizes = arr.chunks[0]
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            nblocks = len(sizes)
            start = 0
            while start < nblocks:
                stop = start + 1
                if batch_frames is None:
                    stop = min(nblocks, start + max(1, blocks_per_batch or 8))
                else:
                    while stop < nblocks and offsets[stop] - offsets[start] + sizes[stop] <= batch_frames:
                        stop += 1
                values = dask.compute(*[arr.blocks[b] for b in range(start, stop)])
                for b, val in zip(range(start, stop), values):
                    self.write(slice(offsets[b], offsets[b + 1]), val)
                start = stop
        else:
            self.dset[...] = np.asarray(self.patterns.values)

    def finish(self) -> None:
        """Write the coordinates (radial and azimuthal axes, per-frame fields)."""
        for name, coord in self.patterns.coords.items():
            if name == self.radial_dim:
                field = "radial_axis"
                nx_attrs = {"long_name": self.nx_long, "units": coord.attrs.get("units", "")}
            elif self.has_azimuth and name == "azimuth":
                field = "azimuthal_axis"
                nx_attrs = {"long_name": "azimuthal bin center", "units": "deg"}
            else:
                field = name
                nx_attrs = {}
                for key in ("units", "long_name"):
                    if key in coord.attrs:
                        nx_attrs[key] = coord.attrs[key]
            write_variable(self.data, field, coord.variable, name=name, role="coord", nexus_attrs=nx_attrs)


def _write_entry(patterns, parent, entry_name: str, nx_class: str, batch_frames, blocks_per_batch) -> None:
    writer = PatternWriter(patterns, parent, entry_name, nx_class)
    writer.write_all(batch_frames, blocks_per_batch)
    writer.finish()


def open_patterns(path, *, entry: str = "entry"):
    """Read patterns written by :func:`write_patterns` back into the same DataArray.

    Parameters
    ----------
    path : path or h5py.Group
        File written by :func:`write_patterns` (or an open group holding ``entry``).
    entry : str
        Entry name.

    Examples
    --------
    See :func:`write_patterns`.
    """
    import h5py

    if isinstance(path, h5py.Group):
        return _read_entry(path, entry)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: patterns file not found")
    with h5py.File(path, "r") as fh:
        if entry not in fh:
            raise ValueError(f"{path}: no entry {entry!r} (found {sorted(fh)})")
        return _read_entry(fh, entry)


def _read_entry(parent, entry: str):
    import xarray as xr

    data = parent[entry]["data"]
    if "xrdflow_dims" in data.attrs:
        return _read_entry_v0(data)
    if "I" not in data or not is_variable(data["I"]):
        raise ValueError(f"{data.file.filename}: {data.name} was not written by xrdflow.write_patterns")
    name, _, var = read_variable(data["I"])
    coords = {}
    for key, dset in data.items():
        if key != "I" and is_variable(dset):
            cname, _, cvar = read_variable(dset)
            coords[cname] = cvar
    return xr.DataArray(var.data, dims=var.dims, coords=coords, attrs=var.attrs, name=name)


def _read_entry_v0(data):
    """Patterns written by xrdflow 0.1 (``@xrdflow_dims``/``@xrdflow_attrs`` JSON encoding)."""
    import xarray as xr

    dims = json.loads(data.attrs["xrdflow_dims"])
    attrs = json.loads(data.attrs["xrdflow_attrs"])
    name = json.loads(data.attrs["xrdflow_name"])
    values = data["I"][()]
    coords = {}
    for key, dset in data.items():
        if key == "I" or "xrdflow_dims" not in dset.attrs:
            continue
        cname = as_str(dset.attrs.get("xrdflow_name", key))
        cdims = json.loads(dset.attrs["xrdflow_dims"])
        cattrs = json.loads(dset.attrs["xrdflow_attrs"])
        val = dset[()]
        if dset.dtype.kind == "O":
            val = np.array([as_str(v) for v in np.ravel(val)], dtype=object).reshape(np.shape(val))
            if np.ndim(val) == 0:
                val = val.item()
        elif "xrdflow_dtype" in dset.attrs:
            val = np.asarray(val).astype("datetime64[ns]").astype(dset.attrs["xrdflow_dtype"])
        coords[cname] = xr.Variable(cdims, val, cattrs)
    return xr.DataArray(values, dims=dims, coords=coords, attrs=attrs, name=name)
