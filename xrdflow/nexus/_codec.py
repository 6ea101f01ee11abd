"""NX groups, fields, NXprocess provenance and attribute decoding (h5py only).

The one place where xrdflow encodes values into HDF5 and decodes them back.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any

import h5py
import numpy as np

__all__ = ["nx_group", "write_field", "write_process", "read_attrs", "provenance"]


def provenance() -> dict[str, str]:
    """Program name, version and UTC time, as stored in every NXprocess xrdflow writes."""
    from .. import __version__

    return {
        "program": "xrdflow",
        "version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def nx_group(parent: h5py.Group, name: str, nx_class: str, **attrs: Any) -> h5py.Group:
    """Create (or open) ``parent[name]`` with ``@NX_class`` and extra attributes."""
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    for key, value in attrs.items():
        group.attrs[key] = value
    return group


def write_field(
    group: h5py.Group,
    name: str,
    data: Any,
    *,
    units: str | None = None,
    long_name: str | None = None,
    **kwargs: Any,
) -> h5py.Dataset:
    """Write a NeXus field (an HDF5 dataset) with optional ``@units`` and ``@long_name``.

    Strings (and lists of strings) are stored as variable-length UTF-8. Extra keyword
    arguments go to :meth:`h5py.Group.create_dataset` (chunks, compression...).
    """
    if name in group:
        del group[name]
    if isinstance(data, str):
        dset = group.create_dataset(name, data=data, dtype=h5py.string_dtype())
    else:
        arr = np.asarray(data)
        if arr.dtype.kind in "UO":
            dset = group.create_dataset(
                name, data=arr.astype(object), dtype=h5py.string_dtype(), **kwargs
            )
        else:
            dset = group.create_dataset(name, data=arr, **kwargs)
    if units is not None:
        dset.attrs["units"] = units
    if long_name is not None:
        dset.attrs["long_name"] = long_name
    return dset


def write_process(
    parent: h5py.Group,
    name: str,
    *,
    parameters: dict[str, Any] | None = None,
    sequence_index: int | None = None,
    note: str | None = None,
) -> h5py.Group:
    """Write an NXprocess with program, version, date and an NXparameters ``input`` group.

    ``parameters`` values that are numbers or strings become fields; anything else
    (dicts, lists) is stored as a JSON string so that the whole input can be read back.
    """
    prov = provenance()
    proc = nx_group(parent, name, "NXprocess")
    write_field(proc, "program", prov["program"])
    write_field(proc, "version", prov["version"])
    write_field(proc, "date", prov["date"])
    if sequence_index is not None:
        write_field(proc, "sequence_index", np.int64(sequence_index))
    if note is not None:
        write_field(proc, "note", note)
    if parameters:
        params = nx_group(proc, "input", "NXparameters")
        for key, value in parameters.items():
            if value is None:
                continue
            if isinstance(value, (str, bool, int, float, np.number)):
                write_field(params, key, value)
            elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                write_field(params, key, value)
            else:
                write_field(params, key, json.dumps(value, default=_json_default))
    return proc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in NXparameters")


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (bytes decoded, 0-d arrays unwrapped)."""
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        out[key] = value
    return out
