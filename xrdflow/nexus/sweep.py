"""Geometry sweeps as files: NetCDF (``.nc``) or NeXus/HDF5 (``.nxs``, ``.h5``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._atomic import atomic_output
from ._codec import nx_group, write_field, write_process, write_variable

__all__ = ["write_sweep"]


def write_sweep(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a sweep to NetCDF (``.nc``) or NeXus/HDF5 (``.nxs``, ``.h5``, ``.hdf5``).

    The file is written atomically. NeXus layout: ``/entry`` (NXentry, @default) with an
    NXprocess ``sweep`` (program, version, date, the parameters) and an NXdata ``data``
    holding every variable as a field (the one xarray encoding of :mod:`._codec`), signal
    ``two_theta`` and axes ``energy``, ``reflection``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from xrdflow import sweep
    >>> ds = sweep("Al", energy_kev=[20.0, 30.0], two_theta_range=(5, 30))
    >>> out = write_sweep(ds, pathlib.Path(tempfile.mkdtemp()) / "al.nxs")
    >>> out.suffix
    '.nxs'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".nxs", ".h5", ".hdf5", ".nx5"):
        raise ValueError(f"path: {path} must end in .nc (NetCDF) or .nxs/.h5/.hdf5 (NeXus)")
    ds = ds.compute()
    if suffix == ".nc":
        out = ds.copy()
        for var in out.variables.values():
            if var.dtype == bool:
                var.attrs.setdefault("flag_values", [0, 1])
        out.attrs = {k: (str(v) if isinstance(v, (list, dict)) else v) for k, v in out.attrs.items()}
        with atomic_output(path) as tmp:
            engine = _netcdf_engine()
            out.to_netcdf(tmp, engine=engine, format=None if engine != "scipy" else "NETCDF3_64BIT")
        return path

    import h5py

    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["default"] = "entry"
            entry = nx_group(f, "entry", "NXentry", default="data")
            write_field(entry, "title", str(ds.attrs.get("title", "xrdflow geometry sweep")))
            params = {k: v for k, v in ds.attrs.items() if k not in ("title",)}
            write_process(entry, "sweep", parameters=params)
            data = nx_group(entry, "data", "NXdata", signal="two_theta",
                            axes=["energy", "reflection"])
            for name in list(ds.coords) + list(ds.data_vars):
                var = ds[name].variable
                if var.dtype == bool:  # NeXus readers know int8 flags better than HDF5 enums
                    var = xr.Variable(var.dims, var.values.astype(np.int8), {**var.attrs, "flag_values": [0, 1]})
                write_variable(data, str(name), var, name=str(name),
                               role="coord" if name in ds.coords else "data")
            for i, ax in enumerate(("energy", "reflection")):
                data.attrs[f"{ax}_indices"] = i
    return path


def _netcdf_engine() -> str:
    import importlib.util

    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf")):
        if importlib.util.find_spec(module):
            return engine
    return "scipy"
