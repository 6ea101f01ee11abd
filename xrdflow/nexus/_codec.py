"""NX groups, fields, NXprocess provenance, and the ONE xarray <-> HDF5 encoding (h5py only).

Every xarray variable xrdflow stores (patterns, peaks, sweeps) is a NeXus field written by
:func:`write_variable` and read back by :func:`read_variable` into the identical variable:

- ``@xarray_name``, ``@xarray_dims`` (JSON list), ``@xarray_role`` (``data``/``coord``);
- the variable's attrs as HDF5 attributes; those that HDF5 cannot hold as they are (None,
  dicts, lists) as JSON, named in ``@xarray_json_attrs``;
- ``units``/``long_name`` that NeXus wants but the variable does not have are marked by
  ``@xarray_no_units`` / ``@xarray_no_long_name``, so they are not read back;
- strings as variable-length UTF-8; datetimes and timedeltas as their int64 values with
  ``@xarray_dtype`` (``datetime64[ns]``...), bit-exact; booleans as HDF5's enum bool.

:func:`as_str` is the one bytes -> str decoding.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any

import h5py
import numpy as np

__all__ = ["nx_group", "write_field", "write_process", "read_attrs", "provenance", "as_str",
           "write_attrs", "read_encoded_attrs", "write_variable", "mark_variable", "read_variable",
           "is_variable"]

#: attribute names the encoding uses for itself
RESERVED_ATTRS = frozenset({"xarray_name", "xarray_dims", "xarray_role", "xarray_dtype", "xarray_json_attrs",
                            "xarray_no_units", "xarray_no_long_name", "xarray_object"})


def as_str(value: Any) -> Any:
    """``bytes`` -> ``str`` (UTF-8); anything else as it is.

    >>> as_str(b"Mg 10-10"), as_str(3)
    ('Mg 10-10', 3)
    """
    return value.decode("utf-8") if isinstance(value, bytes) else value


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
            value = as_str(value)
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        out[key] = value
    return out


def write_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Store an xarray ``attrs`` dict on an HDF5 object (see the module docstring)."""
    json_keys = []
    for key, value in attrs.items():
        if key in RESERVED_ATTRS:
            raise ValueError(f"attrs: attribute name {key!r} is reserved for xrdflow's encoding")
        if value is None or isinstance(value, (dict, list, tuple)):
            obj.attrs[key] = json.dumps(value, default=_json_default)
            json_keys.append(key)
        elif isinstance(value, np.generic):
            obj.attrs[key] = value.item()
        else:
            obj.attrs[key] = value
    if json_keys:
        obj.attrs["xarray_json_attrs"] = json.dumps(json_keys)


def read_encoded_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """The xarray ``attrs`` stored by :func:`write_attrs` (NX_class and the encoding's own
    attributes left out)."""
    attrs = read_attrs(obj)
    json_keys = json.loads(attrs.pop("xarray_json_attrs", "[]"))
    for key in RESERVED_ATTRS | {"NX_class"}:
        attrs.pop(key, None)
    for key in json_keys:
        attrs[key] = json.loads(attrs[key])
    return attrs


def write_variable(group: h5py.Group, field: str, var, *, name: str | None, role: str = "data",
                   nexus_attrs: dict[str, Any] | None = None, values=None, **kwargs: Any) -> h5py.Dataset:
    """Write the xarray Variable ``var`` as the field ``group[field]``.

    ``nexus_attrs`` (``units``, ``long_name``...) are what the NeXus definition asks for;
    the variable's own attrs take precedence, and NeXus-only ones are not read back.
    ``values`` (optional) are written instead of ``var.values``. Extra ``kwargs`` go to :meth:`h5py.Group.create_dataset`.
    """
    if role not in ("data", "coord"):
        raise ValueError(f"role: must be 'data' or 'coord', got {role!r}")
    if field in group:
        del group[field]
    values = np.asarray(var.values if values is None else values)
    dtype_tag = None
    if values.dtype.kind in "Mm":
        dtype_tag = str(values.dtype)
        values = values.view(np.int64)
    if values.dtype.kind in "UO":
        dset = group.create_dataset(field, data=values.astype(object), dtype=h5py.string_dtype(), **kwargs)
        if values.dtype.kind == "O":
            dset.attrs["xarray_object"] = 1
    else:
        dset = group.create_dataset(field, data=values, **kwargs)
    attrs = dict(var.attrs)
    for key, value in (nexus_attrs or {}).items():
        if key not in attrs:
            dset.attrs[key] = value
            if key in ("units", "long_name"):
                dset.attrs[f"xarray_no_{key}"] = 1
    write_attrs(dset, attrs)
    mark_variable(dset, name=name, dims=var.dims, role=role, dtype_tag=dtype_tag)
    return dset


def mark_variable(dset: h5py.Dataset, *, name: str | None, dims, role: str = "data", dtype_tag: str | None = None) -> None:
    """The encoding's own attributes: what :func:`read_variable` needs to rebuild a variable."""
    if name is not None:  # an unnamed DataArray stays unnamed
        dset.attrs["xarray_name"] = str(name)
    dset.attrs["xarray_dims"] = json.dumps([str(d) for d in dims])
    dset.attrs["xarray_role"] = role
    if dtype_tag:
        dset.attrs["xarray_dtype"] = dtype_tag


def is_variable(obj: h5py.HLObject) -> bool:
    """Whether ``obj`` is a field written by :func:`write_variable`."""
    return isinstance(obj, h5py.Dataset) and "xarray_dims" in obj.attrs


def read_variable(dset: h5py.Dataset):
    """A field written by :func:`write_variable` -> ``(name, role, xarray.Variable)``."""
    import xarray as xr

    raw = read_attrs(dset)
    dims = tuple(json.loads(raw["xarray_dims"]))
    if h5py.check_string_dtype(dset.dtype) is not None:
        values = dset.asstr()[()]
        if np.ndim(values):
            values = np.asarray(values, dtype=object if raw.get("xarray_object") else str)
        else:
            values = np.asarray(str(values), dtype=object) if raw.get("xarray_object") else str(values)
    else:
        values = dset[()]
    if "xarray_dtype" in raw:
        values = np.asarray(values).view(raw["xarray_dtype"])
    attrs = read_encoded_attrs(dset)
    ordered: dict[str, Any] = {}
    for key in ("units", "long_name"):
        if key in attrs and not raw.get(f"xarray_no_{key}", 0):
            ordered[key] = attrs[key]
        attrs.pop(key, None)
    ordered.update(attrs)
    name = raw.get("xarray_name")
    return name, raw.get("xarray_role", "data"), xr.Variable(dims, values, ordered)
