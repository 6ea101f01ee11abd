"""xrdflow.nexus: one xarray <-> HDF5 encoding, files of the previous release still open,
and the files NeXus validators read."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import xrdflow
from xrdflow.nexus import _codec

LEGACY = Path(__file__).parent / "data" / "legacy-0.1"


# ------------------------------------------------------------------------- the codec
@pytest.mark.parametrize("values", [
    np.arange(6, dtype=np.int16).reshape(2, 3),
    np.array([1.5, np.nan, -np.inf]),
    np.array([True, False]),
    np.array(["Mg 10-10", "Mg 0002"]),
    np.array(["a", "bc"], dtype=object),
    np.array(["2026-12-01T10:00:00.123456789", "NaT"], dtype="datetime64[ns]"),
    np.array([1, 2], dtype="datetime64[s]"),
    np.array([5, -3], dtype="timedelta64[ms]"),
    np.float32(3.25),
], ids=lambda v: str(getattr(v, "dtype", type(v))))
def test_variable_round_trip_is_identical(tmp_path, values):
    dims = tuple(f"d{i}" for i in range(np.ndim(values)))
    var = xr.Variable(dims, values, {"units": "1/nm", "long_name": "x", "flag_values": [0, 1],
                                     "note": None, "meta": {"a": 1}, "n": np.int64(3)})
    with h5py.File(tmp_path / "v.h5", "w") as f:
        _codec.write_variable(f, "field", var, name="position", role="coord")
    with h5py.File(tmp_path / "v.h5") as f:
        name, role, back = _codec.read_variable(f["field"])
    assert (name, role) == ("position", "coord")
    assert back.dtype == var.dtype
    xr.testing.assert_identical(xr.DataArray(back), xr.DataArray(var))
    if var.dtype.kind in "Mm":  # bit-exact, NaT included
        np.testing.assert_array_equal(back.values.view(np.int64), var.values.view(np.int64))


def test_nexus_only_attributes_are_not_read_back(tmp_path):
    var = xr.Variable(("q",), [1.0, 2.0])  # no units or long_name of its own
    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = _codec.write_variable(f, "radial_axis", var, name="q", nexus_attrs={"units": "1/nm", "long_name": "q"})
        assert d.attrs["units"] == "1/nm"  # what a NeXus reader sees
    with h5py.File(tmp_path / "v.h5") as f:
        _, _, back = _codec.read_variable(f["radial_axis"])
    assert back.attrs == {}


def test_reserved_attribute_names_are_refused(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f, pytest.raises(ValueError, match="xarray_dims"):
        _codec.write_variable(f, "x", xr.Variable(("a",), [1], {"xarray_dims": "[]"}), name="x")


def test_one_encoding_in_every_layout(tmp_path):
    """patterns and results carry the same xarray attributes (no second encoding left)."""
    p = xr.DataArray(np.ones((2, 3), np.float32), dims=("frame", "q"), name="intensity",
                     coords={"q": ("q", [1.0, 2.0, 3.0], {"units": "1/nm"})},
                     attrs={"radial_unit": "q_nm^-1", "units": "arbitrary units"})
    xrdflow.write_patterns(p, tmp_path / "p.nxs")
    ds = xr.Dataset({"position": (("frame", "peak"), np.ones((2, 1)))}, coords={"peak": ["a"]})
    xrdflow.write_result(ds, tmp_path / "r.nxs")
    seen = set()
    for path in (tmp_path / "p.nxs", tmp_path / "r.nxs"):
        with h5py.File(path) as f:
            f.visititems(lambda n, o: seen.update(k for k in o.attrs if k.startswith(("xrdflow_", "xarray_"))))
    assert seen and all(k in _codec.RESERVED_ATTRS for k in seen), seen


# ------------------------------------------------------------- the previous release's files
def _legacy(name):
    path = LEGACY / name
    if not path.exists():
        pytest.fail(f"{path} is missing: make it with tests/data/make_legacy.py")
    return path


def test_raw_file_of_release_0_1_opens_bit_exact():
    frames = xrdflow.open_frames(_legacy("raw.nxs"))
    np.testing.assert_array_equal(frames.values, np.load(_legacy("raw_frames.npy")))
    assert frames.dtype == np.uint16
    np.testing.assert_allclose(frames.applied_strain.values, [0.0, 0.01, 0.02])
    np.testing.assert_array_equal(frames.load_N.values, [10, 20, 30])
    assert frames.attrs["energy_kev"] == pytest.approx(87.1)


@pytest.mark.parametrize("name", ["patterns_1d", "patterns_2d"])
def test_patterns_of_release_0_1_open_identical(name):
    back = xrdflow.open_patterns(_legacy(f"{name}.nxs"))
    expect = xr.open_dataarray(_legacy(f"{name}.nc")).load()
    if "sector" in expect.coords:  # netCDF gives fixed strings where 0.1 wrote objects
        expect = expect.assign_coords(sector=expect.sector.astype(object))
    xr.testing.assert_identical(back, expect)


def test_result_of_release_0_1_opens_identical():
    back = xrdflow.open_result(_legacy("result.nxs"))
    assert back.attrs == {"title": "legacy", "reference": {"Mg 10-10": 2.78}, "note": None}
    expect = xr.open_dataset(_legacy("result.nc")).load()
    xr.testing.assert_identical(back.drop_attrs(deep=False), expect)


def test_patterns_written_now_read_back_as_release_0_1_wrote_them(tmp_path):
    """The new encoding gives the same DataArray as 0.1's for the same input."""
    old = xrdflow.open_patterns(_legacy("patterns_2d.nxs"))
    xrdflow.write_patterns(old, tmp_path / "again.nxs")
    xr.testing.assert_identical(xrdflow.open_patterns(tmp_path / "again.nxs"), old)


@pytest.mark.parametrize("kw", [{}, {"batch_frames": 1}, {"batch_frames": 5}, {"batch_frames": 100}])
def test_write_patterns_in_batches_of_frames(tmp_path, kw, raise_if_dask_computes):
    import dask.array as da

    values = np.random.default_rng(1).random((11, 7)).astype(np.float32)
    p = xr.DataArray(da.from_array(values, chunks=(2, -1)), dims=("frame", "q"),
                     coords={"q": ("q", np.arange(7.0), {"units": "1/nm"})}, attrs={"radial_unit": "q_nm^-1"})
    n_blocks = 6
    expected = {None: 1, 1: n_blocks, 5: 3, 100: 1}[kw.get("batch_frames")]
    with raise_if_dask_computes(max_computes=expected) as sched:
        xrdflow.write_patterns(p, tmp_path / "p.nxs", **kw)
    assert sched.total == expected
    np.testing.assert_array_equal(xrdflow.open_patterns(tmp_path / "p.nxs").values, values)


def test_blocks_per_batch_is_deprecated(tmp_path):
    p = xr.DataArray(np.ones((2, 3), np.float32), dims=("frame", "q"), attrs={"radial_unit": "q_nm^-1"})
    with pytest.warns(DeprecationWarning, match="batch_frames"):
        xrdflow.write_patterns(p, tmp_path / "p.nxs", blocks_per_batch=2)
    with pytest.raises(ValueError, match="batch_frames"):
        xrdflow.write_patterns(p, tmp_path / "q.nxs", batch_frames=0)


# ------------------------------------------------------------- every file validates
def _validation_errors(path) -> dict[str, int]:
    """NeXus errors of a file: against the base classes, and against each application
    definition its entries declare (nexusformat's validator, offline definitions)."""
    import logging

    from nexusformat.nexus.validate import validate_application, validate_file

    logging.getLogger("NXValidate").setLevel(logging.CRITICAL)
    errors = {"base classes": validate_file(str(path))[1]}
    with h5py.File(path, "r") as f:
        declared = {name: _codec.as_str(g["definition"][()]) for name, g in f.items()
                    if isinstance(g, h5py.Group) and "definition" in g}
    for name, definition in declared.items():
        errors[definition] = validate_application(str(path), path=f"/{name}", application=definition)[1]
    return errors


@pytest.fixture(scope="module")
def every_file_kind(tmp_path_factory):
    """One file of each kind xrdflow writes, made through the public API."""
    from conftest import ring_frames, ring_geometry, write_tiffs

    folder = tmp_path_factory.mktemp("files")
    geometry = ring_geometry()
    frames = ring_frames(geometry, 4, dtype=np.uint16, negative=False)
    paths = write_tiffs(folder / "src", frames)
    (folder / "src" / "log.csv").write_text("frame,applied_strain,load_N\n"
                                            + "".join(f"{i},{0.01 * i},{10 * i}\n" for i in range(1, 5)))
    files = {"raw": xrdflow.ingest(paths, folder / "raw.nxs", energy_kev=87.1,
                                   strain_log=folder / "src" / "log.csv").output}
    raw = xrdflow.open_frames(files["raw"])
    p1 = xrdflow.integrate(raw, geometry, npt=200)
    files["patterns"] = xrdflow.write_patterns(p1, folder / "patterns.nxs") or folder / "patterns.nxs"
    p2 = xrdflow.integrate(raw, geometry, npt=200, azimuth_sectors={"axial": (0.0, 20.0), "transverse": (90.0, 20.0)})
    files["patterns (sectors)"] = xrdflow.write_patterns(p2, folder / "sectors.nxs") or folder / "sectors.nxs"
    q = p1.q.values
    peaks = {"ring": float(q[np.argmax(p1.isel(frame=0).values)])}
    fits = xrdflow.lattice_strain(xrdflow.fit_peaks(p1, peaks, half_width=1.0), reference="first")
    files["result"] = xrdflow.write_result(fits, folder / "result.nxs")
    table = xrdflow.sweep("Mg", energy_kev=[30.0, 87.1], reflections=["10-10", "0002"], thickness_mm=1.0)
    files["sweep"] = xrdflow.write_sweep(table, folder / "sweep.nxs")
    return files


@pytest.mark.parametrize("kind", ["raw", "patterns", "patterns (sectors)", "result", "sweep"])
def test_every_file_validates_with_no_error(every_file_kind, kind):
    path = every_file_kind[kind]
    errors = _validation_errors(path)
    assert errors == {k: 0 for k in errors}, f"{kind} ({path}): {errors}"
    if kind.startswith("patterns"):  # what these files declare is checked, not only the base classes
        assert set(errors) == {"base classes", "NXazint2d" if "sectors" in kind else "NXazint1d"}
    else:
        assert set(errors) == {"base classes"}, f"{kind} declares a definition it should be checked against"
