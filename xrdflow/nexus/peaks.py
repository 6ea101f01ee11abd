"""Peak-fit results as NeXus (NXprocess + NXreflections in the spirit of NXstress), and back.

Layout::

    /entry                      NXentry      @default = "peak_fit"
      /peaks                    NXcollection center, center_errors, fwhm, fwhm_errors,
                                             height, height_errors, background(_errors),
                                             status, h, k, l, phase_name, ... (every
                                             variable and coordinate of the Dataset)
      /peak_fit                 NXprocess    program, version, date, input (NXparameters)
        /data                   NXdata       signal "center" (hard links), axes for silx
        /xarray_attrs           NXcollection the Dataset attrs

The field names are NXstress's NXreflections terms, at the path NXstress gives them
(``/entry/peaks``). The group is an NXcollection, not an NXreflections: only the NXstress
application definition allows NXreflections in an NXentry, and this file does not declare
NXstress, whose required instrument, beam-profile and diffractogram groups a peak-fit result
cannot fill with real values. So the file validates against the base classes with 0 errors
(xrdflow 0.1 wrote NXreflections there; those files open the same).

Every field is written by the one xarray encoding of :mod:`._codec` (``@xarray_name``,
``@xarray_dims``, ``@xarray_role``...), so :func:`open_result` rebuilds the identical Dataset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from ._atomic import atomic_output
from ._codec import (as_str, is_variable, nx_group, read_encoded_attrs, read_variable, write_attrs,
                     write_field, write_process, write_variable)

__all__ = ["write_result", "open_result"]

#: Dataset name -> NXstress-style field name
NXSTRESS_NAMES = {
    "position": "center",
    "position_error": "center_errors",
    "fwhm": "fwhm",
    "fwhm_error": "fwhm_errors",
    "amplitude": "height",
    "amplitude_error": "height_errors",
    "background": "background",
    "background_error": "background_errors",
    "phase": "phase_name",
}
def write_result(ds: xr.Dataset, path: str | os.PathLike, *, entry: str = "entry", append: bool = False) -> Path:
    """Write a fit Dataset (from :func:`xrdflow.fit_peaks`) as a NeXus file.

    The file is written atomically (a ``.partial`` file renamed on success). Lazy (dask)
    variables are computed here, one variable at a time.

    Parameters
    ----------
    ds : xr.Dataset
        Fit results, dims ``(frame, [azimuth,] peak)``.
    path : str or path
        Output file (``.nxs``); its folder must exist.
    entry : str
        Name of the NXentry.
    append : bool
        Add (or replace) ``entry`` in an existing file, keeping its other entries (the run
        adds the strain tensor as ``strain_tensor`` next to the fits); still atomic: the file
        is copied, changed under the temporary name and renamed. The file's default entry
        stays the one it had.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, xarray as xr
    >>> ds = xr.Dataset({"position": (("frame", "peak"), np.ones((2, 1)), {"units": "1/nm"})},
    ...                 coords={"peak": ["Mg 10-10"]})
    >>> out = write_result(ds, pathlib.Path(tempfile.mkdtemp()) / "fit.nxs")
    >>> open_result(out).identical(ds)
    True
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds: expected an xarray.Dataset, got {type(ds).__name__}")
    path = Path(path)
    names = {}
    used = set()
    for name in list(ds.data_vars) + list(ds.coords):
        field = NXSTRESS_NAMES.get(name, name)
        if field in used or field in NXSTRESS_NAMES.values() and field != NXSTRESS_NAMES.get(name):
            field = f"xr_{name}"
        if "/" in field:
            raise ValueError(f"ds: variable name {name!r} cannot contain '/'")
        used.add(field)
        names[name] = field
    params = {k: v for k, v in ds.attrs.items() if isinstance(v, (str, int, float, np.number))}
    append = bool(append) and path.is_file()
    with atomic_output(path) as tmp:
        if append:
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+" if append else "w") as f:
            if append and entry in f:
                del f[entry]
            if not append:
                f.attrs["default"] = entry
            f.attrs["creator"] = "xrdflow"
            ent = nx_group(f, entry, "NXentry", default="peak_fit")
            write_field(ent, "title", str(ds.attrs.get("title", "xrdflow peak fits")))
            proc = write_process(ent, "peak_fit", parameters=params)
            proc.attrs["default"] = "data"
            peaks = nx_group(ent, "peaks", "NXcollection")  # NXstress's path and terms (see above)
            peaks.attrs["nxstress_class"] = "NXreflections"
            for name, field in names.items():
                write_variable(peaks, field, ds[name].variable, name=str(name),
                               role="coord" if name in ds.coords else "data")
            if "center_type" not in peaks and "position" in ds:
                write_field(peaks, "center_type", str(ds.attrs.get("radial_dim", "position")))
            note = nx_group(proc, "xarray_attrs", "NXcollection")
            write_attrs(note, dict(ds.attrs))
            # NXdata for silx / h5web: the first variable (centre if present) against its dims
            signal_name = "position" if "position" in ds else next(iter(ds.data_vars), None)
            if signal_name is not None:
                data = nx_group(proc, "data", "NXdata", signal=names[signal_name])
                data[names[signal_name]] = peaks[names[signal_name]]
                axes = []
                for dim in ds[signal_name].dims:
                    if dim in ds.coords and ds[dim].dtype.kind in "iuf":
                        data[names[dim]] = peaks[names[dim]]
                        axes.append(names[dim])
                    else:
                        axes.append(".")
                data.attrs["axes"] = axes
    return path


def open_result(path: str | os.PathLike, *, entry: str = "entry") -> xr.Dataset:
    """Read a file written by :func:`write_result` back into the identical Dataset.

    Parameters
    ----------
    path : str or path
        NeXus file.
    entry : str
        Name of the NXentry.

    Returns
    -------
    xr.Dataset

    Examples
    --------
    See :func:`write_result`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such result file")
    data_vars = {}
    coords = {}
    with h5py.File(path, "r") as f:
        try:
            proc = f[entry]["peak_fit"]
            peaks = f[entry]["peaks"]
        except KeyError:
            raise ValueError(f"{path}: no /{entry}/peak_fit and /{entry}/peaks groups (not an xrdflow result)") from None
        for field in peaks:
            if not is_variable(peaks[field]):
                continue
            name, role, var = read_variable(peaks[field])
            (coords if role == "coord" else data_vars)[as_str(name)] = var
        ds_attrs = read_encoded_attrs(proc["xarray_attrs"]) if "xarray_attrs" in proc else {}
    return xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
