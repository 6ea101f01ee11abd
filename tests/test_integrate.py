"""xrdflow.integrate: identical to pyFAI frame by frame, thread-safe, lazy, NXazint round trip."""

from __future__ import annotations

import os
import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from conftest import shared
from xrdflow.geometry import Geometry
from xrdflow import integrate, open_patterns, sectors_around_axis, write_patterns

SHAPE = (180, 200)
GEOM = Geometry(dist=0.15, poni1=0.0095, poni2=0.0105, rot1=0.01, rot2=-0.02, rot3=0.0,
                wavelength=0.5e-10, detector="Detector", pixel1=1e-4, pixel2=1e-4, max_shape=SHAPE)


def _frames(n, seed=0, negative=True):
    """n frames of rings whose widths/heights change with the frame index (all different)."""
    from pyFAI.calibrant import get_calibrant
    from pyFAI.crystallography.resolution import Caglioti

    cal = get_calibrant("LaB6", wavelength=GEOM.wavelength)
    base = cal.fake_calibration_image(GEOM.to_pyfai(), resolution=Caglioti(0.0, 0.0, 2e-4))
    rng = np.random.default_rng(seed)
    out = np.empty((n,) + SHAPE, np.int32)
    yy = np.arange(SHAPE[0])[:, None]
    for i in range(n):
        img = 1000 * base * (1 + 0.3 * i) + 50 * np.sin(yy / (5 + i))
        out[i] = rng.poisson(np.clip(img, 0, None) + 5)
    if negative:
        out[:, 60:64, :] = -1  # a module gap
        out[:, 10, 17] = -2
    return out


def _as_dataarray(arr, chunk=2):
    n = arr.shape[0]
    return xr.DataArray(
        da.from_array(arr, chunks=(chunk, -1, -1)), dims=("frame", "y", "x"),
        coords={"frame": np.arange(n), "applied_strain": ("frame", np.linspace(0, 0.05, n), {"units": "1"}),
                "time": ("frame", np.arange(n) * 0.5, {"units": "s"})},
        attrs={"energy_kev": GEOM.energy_kev, "wavelength_a": GEOM.wavelength_a})


def _reference(arr, geom, *, npt, unit="q_nm^-1", method=("bbox", "csr", "cython"), mask=None,
               polarization_factor=None, radial_range=None, azimuth_range=None, chi_at_zero=False):
    """Plain pyFAI, frame by frame, with its own fresh integrator."""
    ai = geom.to_pyfai()
    if chi_at_zero:
        ai.setChiDiscAtZero()
    out = []
    for frame in arr:
        img = np.flipud(frame) if geom.orientation == "flipud" else frame
        m = None if mask is None else (np.flipud(mask) if geom.orientation == "flipud" else mask)
        img = np.where(img < 0, -1, img)
        res = ai.integrate1d(img, npt, unit=unit, method=method, mask=m, dummy=-1.0, delta_dummy=0.0,
                             polarization_factor=polarization_factor, radial_range=radial_range,
                             azimuth_range=azimuth_range)
        out.append(res.intensity)
    return res.radial, np.array(out)


def _assert_close(a, b):
    scale = np.nanmax(np.abs(b))
    assert scale > 0
    np.testing.assert_array_less(np.nanmax(np.abs(np.asarray(a) - b)), 1e-6 * scale + 1e-30)


@pytest.fixture(scope="module")
def frames12():
    return _frames(12)


@pytest.mark.parametrize("orientation", ["as_read", "flipud"])
@pytest.mark.parametrize("method,unit", [(("bbox", "csr", "cython"), "q_nm^-1"),
                                         (("full", "csr", "cython"), "2th_deg"),
                                         (("no", "histogram", "cython"), "q_A^-1")])
def test_identical_to_pyfai_threaded(frames12, orientation, method, unit):
    geom = GEOM.replace(orientation=orientation)
    mask = np.zeros(SHAPE, bool)
    mask[100:110, 20:60] = True
    p = integrate(_as_dataarray(frames12), geom, npt=300, unit=unit, method=method, mask=mask,
                  polarization_factor=0.95)
    with dask.config.set(scheduler="threads", num_workers=2):
        got = p.compute()
    radial, ref = _reference(frames12, geom, npt=300, unit=unit, method=method, mask=mask,
                             polarization_factor=0.95)
    np.testing.assert_allclose(got[got.dims[-1]].values, radial, rtol=1e-12)
    _assert_close(got.values, ref)
    # labels, coords carried through
    assert got.dims == ("frame", {"q_nm^-1": "q", "q_A^-1": "q", "2th_deg": "two_theta"}[unit])
    np.testing.assert_array_equal(got.applied_strain, np.linspace(0, 0.05, 12))
    assert got.applied_strain.attrs["units"] == "1" and got.time.attrs["units"] == "s"
    assert got.attrs["radial_unit"] == unit and got.attrs["method"] == ",".join(method)
    assert got.attrs["wavelength_a"] == pytest.approx(0.5) and got.attrs["orientation"] == orientation
    assert got[got.dims[-1]].attrs["units"] == {"q_nm^-1": "1/nm", "q_A^-1": "1/A", "2th_deg": "deg"}[unit]


def test_thread_safety_many_frames_many_threads():
    """Different content in every frame, 1 frame per task, 6 threads: a shared integrator
    (pyFAI CSR engines keep one scratch buffer) gives wrong patterns here."""
    arr = _frames(48, seed=3)
    p = integrate(_as_dataarray(arr, chunk=1), GEOM, npt=400)
    with dask.config.set(scheduler="threads", num_workers=6):
        got = p.compute()
    _, ref = _reference(arr, GEOM, npt=400)
    _assert_close(got.values, ref)
    # patterns really differ between frames (the test can see a mix-up)
    assert np.abs(ref[0] - ref[-1]).max() > 0.1 * np.abs(ref).max()


def test_one_integrator_per_thread_not_per_task(monkeypatch):
    import threading

    import importlib

    mod = importlib.import_module("xrdflow.engines.pyfai")  # where the tasks get their integrator

    seen = {}
    real = mod.cached_integrator

    def spy(geometry, variant=None):
        ai = real(geometry, variant)
        seen.setdefault(threading.get_ident(), set()).add(id(ai))
        return ai

    monkeypatch.setattr(mod, "cached_integrator", spy)
    arr = _frames(16, seed=1)
    with dask.config.set(scheduler="threads", num_workers=4):
        integrate(arr, GEOM, npt=100, frames_per_chunk=1).compute()
    ids_per_thread = list(seen.values())
    assert all(len(s) == 1 for s in ids_per_thread)  # reused for every task of a thread
    all_ids = [i for s in ids_per_thread for i in s]
    assert len(all_ids) == len(set(all_ids))  # never shared across threads


def test_identical_under_distributed(frames12):
    distributed = pytest.importorskip("distributed")
    p = integrate(_as_dataarray(frames12), GEOM, npt=200, azimuth_sectors=4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        got = p.compute()
    for j, (lo, hi) in enumerate(zip(got.azimuth_min.values, got.azimuth_max.values)):
        _, ref = _reference(frames12, GEOM, npt=200, radial_range=tuple(
            __import__("json").loads(got.attrs["radial_range"])), azimuth_range=(lo, hi))
        _assert_close(got.values[:, j], ref)


def test_named_sectors_and_wrap(frames12):
    sectors = {"axial": (180.0, 10.0), "transverse": (-90.0, 10.0), **{"n": (30.0, 5.0)}}
    p = integrate(frames12, GEOM, npt=150, azimuth_sectors=sectors)
    got = p.compute(scheduler="threads")
    assert got.dims == ("frame", "azimuth", "q")
    assert list(got.sector.values) == ["axial", "transverse", "n"]
    np.testing.assert_allclose(got.azimuth.values, [-180.0, -90.0, 30.0])
    np.testing.assert_allclose(got.sector_half_width.values, [10, 10, 5])
    rr = tuple(__import__("json").loads(got.attrs["radial_range"]))
    _, ref = _reference(frames12, GEOM, npt=150, radial_range=rr, azimuth_range=(170.0, 190.0), chi_at_zero=True)
    _assert_close(got.values[:, 0], ref)
    _, ref = _reference(frames12, GEOM, npt=150, radial_range=rr, azimuth_range=(-100.0, -80.0))
    _assert_close(got.values[:, 1], ref)
    assert sectors_around_axis(0, 10) == {"axial": (0.0, 10.0), "transverse": (90.0, 10.0)}


def test_equal_sectors_cover_the_ring(frames12):
    got = integrate(frames12[:2], GEOM, npt=100, azimuth_sectors=36).compute()
    assert got.sizes["azimuth"] == 36
    np.testing.assert_allclose(got.azimuth.values, np.arange(-175, 180, 10))
    assert got.sector.values[0] == "-180..-170"


def test_lazy_and_chunks(frames12):
    def boom(*args, **kwargs):
        raise AssertionError("integrate computed the dask graph eagerly")

    arr = _as_dataarray(frames12, chunk=3)
    with dask.config.set(scheduler=boom):
        p = integrate(arr, GEOM, npt=64, azimuth_sectors=2)
    assert isinstance(p.data, da.Array)
    assert p.data.chunks == ((3, 3, 3, 3), (2,), (64,))
    assert p.dtype == np.float32
    # a frame split across chunks is rechunked to whole frames
    split = xr.DataArray(da.from_array(frames12, chunks=(2, 90, 100)), dims=("frame", "y", "x"))
    assert integrate(split, GEOM, npt=64).data.chunks == ((2,) * 6, (64,))


def test_single_image_and_numpy_input(frames12):
    one = integrate(frames12[0], GEOM, npt=80).compute()
    assert one.dims == ("q",)
    many = integrate(frames12, GEOM, npt=80).compute()
    _assert_close(one.values, many.values[0])


def test_mask_file_and_detector_negative(tmp_path, frames12):
    import fabio

    mask = np.zeros(SHAPE, np.int32)
    mask[:, :50] = 1
    path = tmp_path / "m.edf"
    fabio.edfimage.EdfImage(data=mask).write(str(path))
    a = integrate(frames12[:2], GEOM, npt=90, mask=path).compute()
    b = integrate(frames12[:2], GEOM, npt=90, mask=mask.astype(bool)).compute()
    xr.testing.assert_identical(a, b)
    c = integrate(frames12[:2], GEOM, npt=90).compute()
    assert not np.allclose(a.values, c.values)


@pytest.mark.parametrize("kwargs,match", [
    (dict(npt=0), "npt"), (dict(npt=10, radial_range=(5, 1)), "radial_range"),
    (dict(npt=10, method=("bbox", "nope", "cython")), "method"), (dict(npt=10, method="magic"), "method"),
    (dict(npt=10, mask=np.zeros((3, 3))), "mask"), (dict(npt=10, unit="furlongs"), "unit"),
    (dict(npt=10, azimuth_sectors={"a": (0, 120)}), "azimuth_sectors"),
    (dict(npt=10, polarization_factor=2), "polarization_factor"),
])
def test_eager_validation(frames12, kwargs, match):
    with pytest.raises(ValueError, match=match):
        integrate(frames12, GEOM, **kwargs)
    with pytest.raises(FileNotFoundError, match="missing.mask"):
        integrate(frames12, GEOM, npt=10, mask="missing.mask")
    with pytest.raises(ValueError, match="shape"):
        integrate(frames12[:, :100], GEOM, npt=10)


def _nx_errors(path, app):
    from nexusformat.nexus.validate import validate_application

    warnings, errors = validate_application(str(path), application=app)
    return errors


@pytest.mark.parametrize("sectors", [None, {"axial": (0.0, 10.0), "transverse": (90.0, 10.0)}])
def test_nexus_round_trip_and_validation(tmp_path, frames12, sectors):
    p = integrate(_as_dataarray(frames12, chunk=5), GEOM, npt=120, azimuth_sectors=sectors,
                  polarization_factor=0.99)
    path = tmp_path / "patterns.nxs"
    write_patterns(p, path)
    back = open_patterns(path)
    xr.testing.assert_identical(back, p.compute())
    assert _nx_errors(path, "NXazint2d" if sectors else "NXazint1d") == 0
    import h5py

    with h5py.File(path) as fh:
        assert fh["entry/definition"][()].decode() == ("NXazint2d" if sectors else "NXazint1d")
        assert fh["entry/reduction/program"][()].decode() == "xrdflow"
        assert fh["entry/reduction/input/dist_m"][()] == GEOM.dist
        assert fh["entry/data"].attrs["signal"] == "I"
        assert fh["entry/data/radial_axis"].attrs["units"] == "1/nm"


def test_write_into_open_group(tmp_path, frames12):
    import h5py

    p = integrate(frames12[:3], GEOM, npt=50, unit="2th_deg").compute()
    with h5py.File(tmp_path / "x.h5", "w") as fh:
        write_patterns(p, fh, entry="azint")
    with h5py.File(tmp_path / "x.h5") as fh:
        xr.testing.assert_identical(open_patterns(fh, entry="azint"), p)
    with pytest.raises(FileNotFoundError):
        open_patterns(tmp_path / "none.nxs")


# ----------------------------------------------------------------------------- real data
def test_lightform_pixium_reference_1d():
    import fabio

    img = fabio.open(str(shared("lightform-i12-ti64-pixium", "pixium_03150.tif"))).data
    ref = np.loadtxt(shared("lightform-i12-ti64-pixium", "reference", "integrated_1d_pixium_03150.dat"))
    # the (older) geometry in the reference file's header, used with the image as read
    geom = Geometry(dist=1.19389178917929, poni1=0.2049430663748966, poni2=0.2073445003343987,
                    rot1=-0.002895489128733415, rot2=0.008002102633795445, rot3=7.1e-10,
                    wavelength=1.393e-11, detector="Detector", pixel1=296e-6, pixel2=296e-6)
    got = integrate(img, geom, npt=len(ref), unit="2th_deg", method=("full", "csr", "cython"),
                    polarization_factor=0.99).compute()
    np.testing.assert_allclose(got.two_theta.values, ref[:, 0], rtol=1e-6)  # 7 digits in the file
    assert np.abs(got.values - ref[:, 1]).max() <= 1e-4 * ref[:, 1].max()


def test_dioptas_fe3o4_map_flipud():
    import fabio

    folder = shared("dioptas-fe3o4-map-pilatus1m")
    geom = Geometry.from_poni(folder / "Fe3O4C_map_derived_from_xy_header.poni", orientation="flipud")
    names = ["Fe3O4C_M1_map_1_P1_E1_001", "Fe3O4C_M1_map_13_P1_E1_001"]
    frames = np.stack([fabio.open(str(folder / f"{n}.tif")).data for n in names])
    refs = [np.loadtxt(folder / "xy" / f"{n}.xy") for n in names]
    step = refs[0][1, 0] - refs[0][0, 0]
    rr = (refs[0][0, 0] - step / 2, refs[0][-1, 0] + step / 2)
    # Dioptas did not mask the negative gap pixels for these .xy files
    got = integrate(frames, geom, npt=len(refs[0]), unit="2th_deg", radial_range=rr,
                    polarization_factor=0.99, mask_negative=False).compute()
    wrong = integrate(frames, geom.replace(orientation="as_read"), npt=len(refs[0]), unit="2th_deg",
                      radial_range=rr, polarization_factor=0.99, mask_negative=False).compute()
    for i, ref in enumerate(refs):
        np.testing.assert_allclose(got.two_theta.values, ref[:, 0], atol=1e-5)
        assert np.corrcoef(got.values[i], ref[:, 1])[0, 1] > 0.99999
        assert np.abs(got.values[i] - ref[:, 1]).max() < 0.01 * ref[:, 1].max()
        assert np.corrcoef(wrong.values[i], ref[:, 1])[0, 1] < 0.999  # orientation matters


_SETUP_RACE = """
import threading, importlib, numpy as np
from xrdflow.geometry import Geometry
pyfai_engine = importlib.import_module("xrdflow.engines.pyfai")
matrix_engine = importlib.import_module("xrdflow.engines.matrix")
from xrdflow.engines import IntegrationSpec
spec = IntegrationSpec(npt=100, unit="q_nm^-1", radial_range=None, method=("bbox", "csr", "cython"),
                       polarization_factor=0.99, correct_solid_angle=True, mask_negative=True,
                       error_model=None, engine="xrdflow")
img = np.random.default_rng(0).poisson(10, (128, 128)).astype(np.uint16)
def work(k):
    for i in range(6):
        g = Geometry(dist=1.0 + 0.01 * (10 * k + i), poni1=0.013, poni2=0.012, wavelength=1.4e-11,
                     detector="Detector", pixel1=2e-4, pixel2=2e-4, max_shape=(128, 128))
        pyfai_engine.integrate_frame(g.to_pyfai(), img, spec, None, None)          # pyFAI path
        matrix_engine.process_sparse(g, (128, 128), spec.replace(engine_key=("race", k, i)), None, None, None)
threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print("ok")
"""


def test_pyfai_setup_in_many_threads_does_not_corrupt_the_heap():
    """With OMP_NUM_THREADS=1 (what a dask LocalCluster leaves in its parent's environment, and
    what distributed workers run with) numexpr runs single-threaded, and pyFAI's shared
    compiled unit expressions then corrupt the heap when two threads set up integrators at
    once (numexpr #569): "double free or corruption", 3 crashes in 3 runs before the fix."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMEXPR_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _SETUP_RACE], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
