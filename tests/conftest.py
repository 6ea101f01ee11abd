"""Shared fixtures: the real data folder (../shared/data) and small frame folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XRDFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))

# tests/data holds files and the scripts that made them, not tests (--doctest-modules would import them)
collect_ignore = ["data"]


def shared(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test with a clear reason where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real test data not found at {path} (the developers' ../shared/data folder; "
            "set XRDFLOW_SHARED_DATA to point elsewhere)"
        )
    return path


@pytest.fixture
def shared_data():
    """Callable fixture: ``shared_data("lightform-i12-ti64-pixium", "pixium_03150.tif")``."""
    return shared


def write_tiffs(folder: Path, frames, *, prefix: str = "frame_", start: int = 1, width: int = 0):
    """Write frames as numbered TIFFs with fabio; returns the paths in frame order."""
    import fabio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=start):
        path = folder / f"{prefix}{i:0{width}d}.tif"
        fabio.tifimage.TifImage(data=np.asarray(frame)).write(str(path))
        paths.append(path)
    return paths


@pytest.fixture
def small_frames(tmp_path):
    """12 random uint16 frames of 64x48 written as frame_1.tif ... frame_12.tif (unpadded)."""
    rng = np.random.default_rng(42)
    frames = rng.integers(0, 60000, size=(12, 64, 48), dtype=np.uint16)
    paths = write_tiffs(tmp_path / "src", frames)
    return frames, paths


# ----------------------------------------------------------------------------- laziness
class CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes``.

    Like xarray's ``raise_if_dask_computes``: use it through the fixture of that name.
    """

    def __init__(self, max_computes: int = 0):
        self.total = 0
        self.max = max_computes

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.total += 1
        if self.total > self.max:
            raise RuntimeError(f"too many dask computes: {self.total} > {self.max}")
        return dask.get(dsk, keys, **kwargs)


@pytest.fixture
def raise_if_dask_computes():
    """``with raise_if_dask_computes(max_computes=0) as sched: ...`` fails on any compute past
    the limit; ``sched.total`` counts them."""
    import contextlib

    import dask

    @contextlib.contextmanager
    def context(max_computes: int = 0):
        sched = CountingScheduler(max_computes)
        with dask.config.set(scheduler=sched):
            yield sched

    return context


# ------------------------------------------------------------- synthetic rings and pyFAI
def ring_geometry(shape=(180, 200), **changes):
    """A small tilted geometry (0.5 A, 100 um pixels) that the integration tests share."""
    from xrdflow import Geometry

    params = dict(dist=0.15, poni1=0.0095, poni2=0.0105, rot1=0.01, rot2=-0.02, rot3=0.0,
                  wavelength=0.5e-10, detector="Detector", pixel1=1e-4, pixel2=1e-4, max_shape=shape)
    params.update(changes)
    return Geometry(**params)


def ring_frames(geometry, n, *, seed=0, dtype=np.int32, negative=True, offset=5.0, zero_corner=False,
                masked_patch=False):
    """``n`` frames of LaB6 rings (each frame different: heights and a background ripple change
    with the index), Poisson noise; optional module gap and a single pixel of negative values
    (``negative``), a zero-count corner and a fully masked patch."""
    from pyFAI.calibrant import get_calibrant
    from pyFAI.crystallography.resolution import Caglioti

    shape = tuple(geometry.max_shape)
    cal = get_calibrant("LaB6", wavelength=geometry.wavelength)
    base = cal.fake_calibration_image(geometry.to_pyfai(), resolution=Caglioti(0.0, 0.0, 2e-4))
    rng = np.random.default_rng(seed)
    out = np.empty((n,) + shape, np.float64)
    yy = np.arange(shape[0])[:, None]
    for i in range(n):
        img = 1000 * base * (1 + 0.3 * i) + 50 * np.sin(yy / (5 + i)) + offset
        out[i] = rng.poisson(np.clip(img, 0, None))
    if zero_corner:
        out[:, :6, :8] = 0  # zero counts: the Poisson variance floor max(x, 1) matters
    if negative:
        out[:, 60:64, :] = -1  # a module gap
        out[:, 10, 17] = -2
        if masked_patch:
            out[:, 100:103, 150:153] = -1  # a fully masked patch
    return out.astype(dtype)


def pyfai_reference(arr, geometry, *, npt, method=("bbox", "csr", "cython"), unit="q_nm^-1", mask=None,
                    polarization_factor=None, correct_solid_angle=True, mask_negative=True,
                    radial_range=None, azimuth_range=None, chi_at_zero=False, error_model=None,
                    dark=None, flat=None, dummy=None, delta_dummy=None):
    """Plain pyFAI ``integrate1d`` frame by frame with its own fresh integrator, as a user
    would call it. Returns ``(radial, intensities, sigmas or None)``."""
    ai = geometry.to_pyfai()
    if chi_at_zero:
        ai.setChiDiscAtZero()
    flip = geometry.orientation == "flipud"

    def fl(a):
        return None if a is None else (np.flipud(a) if flip else a)

    intens, sig = [], []
    for frame in arr:
        img = fl(frame)
        kw = dict(dummy=dummy, delta_dummy=delta_dummy)
        if mask_negative and img.dtype.kind in "if":
            img = np.where(img < 0, img.dtype.type(-1), img)
            kw = dict(dummy=-1.0, delta_dummy=0.0)
        res = ai.integrate1d(img, npt, unit=unit, method=method, mask=fl(mask),
                             polarization_factor=polarization_factor, correctSolidAngle=correct_solid_angle,
                             radial_range=radial_range, azimuth_range=azimuth_range, error_model=error_model,
                             dark=fl(dark), flat=fl(flat), **kw)
        intens.append(res.intensity)
        if error_model:
            sig.append(res.sigma)
    return res.radial, np.array(intens), (np.array(sig) if error_model else None)


def assert_close(a, b, rel=1e-6):
    """``max |a - b| <= rel * max |b|`` and NaN in the same places."""
    b = np.asarray(b)
    scale = np.nanmax(np.abs(b))
    assert scale > 0
    diff = np.nanmax(np.abs(np.asarray(a, np.float64) - b))
    assert diff <= rel * scale, f"max abs difference {diff:.3g} > {rel:g} x max {scale:.3g}"
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


# ------------------------------------------------- synthetic patterns with three known peaks
PEAKS_Q = np.linspace(15.0, 35.0, 2001)  # 1/nm
PEAKS_D_TRUE = np.array([3.2, 2.6, 2.45])  # Angstrom
PEAKS_Q_TRUE = 20 * np.pi / PEAKS_D_TRUE


def peak_patterns(nframe=6, naz=0, use_dask=True, seed=0, strain=1e-3):
    """Poisson patterns with the three Mg-like peaks of PEAKS_D_TRUE, d growing by ``strain``
    a frame (``naz`` azimuth sectors); returns the patterns and the true centres [frame, peak]."""
    rng = np.random.default_rng(seed)
    shape = (nframe, max(naz, 1), PEAKS_Q.size)
    applied = np.linspace(0, 0.02, nframe)
    qc = PEAKS_Q_TRUE[None, :] / (1 + strain * np.arange(nframe))[:, None]  # d grows with frame
    mu = np.full(shape, 50.0)
    for i in range(len(PEAKS_Q_TRUE)):
        mu += 800 * np.exp(-((PEAKS_Q - qc[:, i, None, None]) ** 2) / (2 * 0.04**2))
    y = rng.poisson(mu).astype(np.float64)
    dims = ("frame", "azimuth", "q") if naz else ("frame", "q")
    y = y if naz else y[:, 0]
    coords = {"q": ("q", PEAKS_Q, {"units": "1/nm"}), "applied_strain": ("frame", applied)}
    if naz:
        coords["azimuth"] = ("azimuth", np.linspace(-170, 170, naz))
        coords["sector"] = ("azimuth", [f"s{i}" for i in range(naz)])
    arr = xr.DataArray(y, dims=dims, coords=coords,
                       attrs={"radial_unit": "q_nm^-1", "wavelength_a": 0.2, "units": "counts"})
    if use_dask:
        arr = arr.chunk({"frame": 2})
    return arr, qc


def peak_reflections():
    """A reflections Dataset for the peaks of :func:`peak_patterns`."""
    labels = ["Mg 10-10", "Mg 0002", "Mg 10-11"]
    return xr.Dataset(
        {
            "d_spacing": ("reflection", PEAKS_D_TRUE),
            "q": ("reflection", PEAKS_Q_TRUE),
            "two_theta": ("reflection", np.zeros(3)),
            "multiplicity": ("reflection", [6, 2, 12]),
            "intensity": ("reflection", [30.0, 40.0, 100.0]),
        },
        coords={
            "reflection": labels,
            "hkl": ("reflection", ["10-10", "0002", "10-11"]),
            "phase": ("reflection", ["Mg"] * 3),
            "h": ("reflection", [1, 0, 1]),
            "k": ("reflection", [0, 0, 0]),
            "l": ("reflection", [0, 2, 1]),
        },
    )
