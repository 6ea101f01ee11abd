"""xrdflow.engines: the fused engine reproduces pyFAI's integrate1d (<= 1e-6 of the pattern's
maximum) for every method, correction, orientation, sector layout and detector dtype; its
Poisson errors match pyFAI's error_model="poisson"; one shared matrix is thread-safe and gives
bit-identical results whatever the threads, batches or chunks; the fallback path is logged."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from conftest import assert_close, pyfai_reference, ring_frames, ring_geometry, shared
from xrdflow import engines
from xrdflow.geometry import Geometry
from xrdflow import integrate

SHAPE = (180, 200)
GEOM = ring_geometry(SHAPE)
METHODS = [("no", "csr", "cython"), ("bbox", "csr", "cython"), ("full", "csr", "cython")]


def _frames(n, seed=0, dtype=np.int32, negative=True):
    """n frames of rings (different in every frame), zeros in a corner, optional gap pixels."""
    return ring_frames(GEOM, n, seed=seed, dtype=dtype, negative=negative, zero_corner=True, masked_patch=True)


@pytest.fixture(scope="module")
def frames6():
    return _frames(6)


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m[0])
@pytest.mark.parametrize("orientation", ["as_read", "flipud"])
@pytest.mark.parametrize("corrections", [dict(polarization_factor=0.95, correct_solid_angle=True),
                                         dict(polarization_factor=None, correct_solid_angle=False)],
                         ids=["pol+sa", "none"])
def test_identical_to_pyfai(frames6, method, orientation, corrections):
    geom = GEOM.replace(orientation=orientation)
    mask = np.zeros(SHAPE, bool)
    mask[100:110, 20:60] = True
    p = integrate(frames6, geom, npt=300, method=method, mask=mask, **corrections)
    assert p.attrs["engine"] == "xrdflow"
    got = p.compute(scheduler="threads")
    ref_p = integrate(frames6, geom, npt=300, method=method, mask=mask, engine="pyfai", **corrections)
    assert ref_p.attrs["engine"] == "pyfai"
    radial, ref, _ = pyfai_reference(frames6, geom, npt=300, method=method, mask=mask, **corrections)
    np.testing.assert_allclose(got.q.values, radial, rtol=1e-12)
    assert_close(got.values, ref)
    assert_close(got.values, ref_p.values)
    # same labels as the pyFAI engine, apart from the engine attribute
    ref_p = ref_p.compute()
    assert got.dims == ref_p.dims and list(got.coords) == list(ref_p.coords)
    assert {k: v for k, v in got.attrs.items() if k != "engine"} == \
        {k: v for k, v in ref_p.attrs.items() if k != "engine"}


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.float32, np.float64, np.int16])
def test_detector_dtypes_read_as_is(dtype):
    arr = _frames(3, seed=2, dtype=dtype, negative=np.dtype(dtype).kind != "u")
    if np.dtype(dtype).kind == "f":
        arr[:, 30, 40] = np.nan  # non-finite pixels are invalid in pyFAI's preprocessing
        arr[:, 31, 40:44] = np.inf
    for method in (METHODS[0], METHODS[1]):
        got = integrate(arr, GEOM, npt=250, method=method, unit="2th_deg", polarization_factor=0.99).compute()
        _, ref, _ = pyfai_reference(arr, GEOM, npt=250, method=method, unit="2th_deg", polarization_factor=0.99)
        assert_close(got.values, ref)


def test_mask_negative_off_and_detector_dummies():
    """Without mask_negative pyFAI uses the detector's dummy (Pilatus: -2 +- 1.5): same here."""
    arr = _frames(2, seed=5)
    got = integrate(arr, GEOM, npt=200, mask_negative=False).compute()
    _, ref, _ = pyfai_reference(arr, GEOM, npt=200, method=METHODS[1], mask_negative=False)
    assert_close(got.values, ref)
    # explicit dummy test of the kernel against pyFAI's dummy/delta_dummy
    sparse = engines.build_sparse(GEOM, SHAPE, npt=200, unit="q_nm^-1", split="bbox")
    for dummy, delta in ((-2.0, 1.5), (-1.0, 0.0), (0.0, 0.0)):
        inten, _ = engines.integrate_frames(sparse, arr, mode=engines.MODE_DUMMY, dummy=dummy,
                                            delta_dummy=delta)
        _, ref, _ = pyfai_reference(arr, GEOM, npt=200, method=METHODS[1], mask_negative=False, dummy=dummy,
                           delta_dummy=delta)
        assert_close(inten, ref)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m[0])
def test_sectors_named_wrapping_and_equal(frames6, method):
    sectors = {"axial": (180.0, 10.0), "transverse": (-90.0, 10.0), "n": (30.0, 5.0)}
    got = integrate(frames6, GEOM, npt=150, method=method, azimuth_sectors=sectors,
                    polarization_factor=0.99).compute()
    ref = integrate(frames6, GEOM, npt=150, method=method, azimuth_sectors=sectors,
                    polarization_factor=0.99, engine="pyfai").compute()
    assert got.dims == ("frame", "azimuth", "q") and got.attrs["engine"] == "xrdflow"
    np.testing.assert_array_equal(got.q.values, ref.q.values)
    for j in range(3):
        assert_close(got.values[:, j], ref.values[:, j])
    got = integrate(frames6[:2], GEOM.replace(orientation="flipud"), npt=100, method=method,
                    azimuth_sectors=8).compute()
    ref = integrate(frames6[:2], GEOM.replace(orientation="flipud"), npt=100, method=method,
                    azimuth_sectors=8, engine="pyfai").compute()
    for j in range(8):
        assert_close(got.values[:, j], ref.values[:, j])


# ----------------------------------------------------------------------------- errors, dark, flat
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m[0])
@pytest.mark.parametrize("orientation", ["as_read", "flipud"])
def test_poisson_errors_match_pyfai(frames6, method, orientation):
    geom = GEOM.replace(orientation=orientation)
    p = integrate(frames6, geom, npt=200, method=method, polarization_factor=0.9, error_model="poisson")
    got = p.compute()
    assert got.I_errors.dims == got.dims and got.attrs["error_model"] == "poisson"
    _, ref, sig = pyfai_reference(frames6, geom, npt=200, method=method, polarization_factor=0.9,
                         error_model="poisson")
    assert_close(got.values, ref)
    assert_close(got.I_errors.values, sig)
    # the pyFAI engine gives the same coordinate
    refp = integrate(frames6, geom, npt=200, method=method, polarization_factor=0.9,
                     error_model="poisson", engine="pyfai").compute()
    assert_close(got.I_errors.values, refp.I_errors.values)


@pytest.mark.parametrize("orientation", ["as_read", "flipud"])
def test_dark_and_flat(frames6, orientation):
    geom = GEOM.replace(orientation=orientation)
    rng = np.random.default_rng(9)
    dark = rng.uniform(0, 4, SHAPE).astype(np.float32)
    flat = rng.uniform(0.8, 1.2, SHAPE).astype(np.float32)
    for method in METHODS:
        got = integrate(frames6, geom, npt=220, method=method, dark=dark, flat=flat,
                        polarization_factor=0.99, error_model="poisson").compute()
        _, ref, sig = pyfai_reference(frames6, geom, npt=220, method=method, dark=dark, flat=flat,
                             polarization_factor=0.99, error_model="poisson")
        assert_close(got.values, ref)
        assert_close(got.I_errors.values, sig)
        assert got.attrs["dark_subtracted"] == 1 and got.attrs["flat_applied"] == 1


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("split", ["bbox", "no"])
def test_bit_identical_across_batches_threads_and_chunks(frames6, split):
    sparse = engines.build_sparse(GEOM, SHAPE, npt=300, unit="q_nm^-1", split=split,
                                  polarization_factor=0.99)
    one = np.concatenate([engines.integrate_frames(sparse, f, errors=True)[0] for f in frames6])
    for batch in (1, 2, 4, 8):
        for threads in (1, 3):
            got, err = engines.integrate_frames(sparse, frames6, batch=batch, threads=threads, errors=True)
            np.testing.assert_array_equal(got, one)
    arr = xr.DataArray(da.from_array(frames6, chunks=(1, -1, -1)), dims=("frame", "y", "x"))
    method = (split, "csr", "cython")
    a = integrate(arr, GEOM, npt=300, method=method, polarization_factor=0.99).compute(scheduler="threads")
    b = integrate(arr.chunk({"frame": 4}), GEOM, npt=300, method=method,
                  polarization_factor=0.99).compute(scheduler="sync")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, one)



@pytest.mark.parametrize("split", ["no", "bbox"])
def test_pixels_invalid_in_some_frames_of_a_batch_only(split):
    """A pass holds 8 frames; a pixel dead (negative) in some of them only is left out of
    those frames alone: the same, bit for bit, as frame by frame, and as pyFAI per frame."""
    arr = _frames(8, seed=9)
    rng = np.random.default_rng(3)
    for f in range(8):  # a different set of dead pixels in every frame, some shared
        yy, xx = rng.integers(0, SHAPE[0], 40 * f + 1), rng.integers(0, SHAPE[1], 40 * f + 1)
        arr[f, yy, xx] = -7
    arr[2:5, 80:90, 90:120] = -1  # a patch dead in frames 2-4
    sparse = engines.build_sparse(GEOM, SHAPE, npt=300, unit="q_nm^-1", split=split)
    one = [engines.integrate_frames(sparse, a, errors=True) for a in arr]
    got, err = engines.integrate_frames(sparse, arr, batch=8, errors=True)
    np.testing.assert_array_equal(got, np.concatenate([o[0] for o in one]))
    np.testing.assert_array_equal(err, np.concatenate([o[1] for o in one]))
    for f in (0, 3, 7):
        _, ref, sig = pyfai_reference(arr[f:f + 1], GEOM, npt=300, method=(split, "csr", "cython"),
                                      error_model="poisson")
        assert_close(got[f:f + 1], ref)
        assert_close(err[f:f + 1], sig)

def test_thread_safety_one_shared_matrix():
    """48 different frames, 1 frame per task, 6 threads, one matrix shared read-only."""
    arr = _frames(48, seed=3)
    before = engines.engine_cache_info()["builds"]
    p = integrate(xr.DataArray(da.from_array(arr, chunks=(1, -1, -1)), dims=("frame", "y", "x")),
                  GEOM, npt=400, polarization_factor=0.97)
    with dask.config.set(scheduler="threads", num_workers=6):
        got = p.compute()
    assert engines.engine_cache_info()["builds"] - before <= 1  # built once, shared by the threads
    _, ref, _ = pyfai_reference(arr, GEOM, npt=400, method=METHODS[1], polarization_factor=0.97)
    assert_close(got.values, ref)
    assert np.abs(ref[0] - ref[-1]).max() > 0.1 * np.abs(ref).max()  # a mix-up would show
    # raw threads hammering the same SparseIntegrator
    sparse = engines.build_sparse(GEOM, SHAPE, npt=400, unit="q_nm^-1", split="full")
    serial = engines.integrate_frames(sparse, arr)[0]
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda i: engines.integrate_frames(sparse, arr[i:i + 1])[0], range(48)))
    np.testing.assert_array_equal(np.concatenate(parts), serial)


def test_matrix_cache_bounded_and_reported(monkeypatch):
    engines.clear_engine_cache()
    arr = _frames(1, seed=4)
    integrate(arr, GEOM, npt=100).compute()
    info = engines.engine_cache_info()
    assert info["entries"] == 1 and info["nbytes"] > 0 and "bbox split" in info["matrices"][0]
    monkeypatch.setenv("XRDFLOW_ENGINE_CACHE_MB", str(info["nbytes"] * 1.5 / 2**20))
    integrate(arr, GEOM, npt=120).compute()
    integrate(arr, GEOM, npt=140).compute()
    info = engines.engine_cache_info()
    assert info["entries"] == 1 and info["nbytes"] <= info["limit_bytes"]


def test_matrix_not_in_graph():
    arr = xr.DataArray(da.from_array(_frames(4), chunks=(2, -1, -1)), dims=("frame", "y", "x"))
    p = integrate(arr, GEOM, npt=100)
    import pickle

    size = len(pickle.dumps(dict(p.data.__dask_graph__())))
    assert size < 2 * _frames(4).nbytes + 200_000  # frames + mask/options, no matrix


# ----------------------------------------------------------------------------- engine choice
def test_fallback_is_logged_and_explicit_choice(frames6, caplog):
    with caplog.at_level(logging.INFO, logger="xrdflow.integrate"):
        p = integrate(frames6, GEOM, npt=100, method=("no", "histogram", "cython"))
    assert p.attrs["engine"] == "pyfai"
    assert any("pyFAI" in r.getMessage() and "histogram" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="engine"):
        integrate(frames6, GEOM, npt=100, method=("no", "histogram", "cython"), engine="xrdflow")
    with pytest.raises(ValueError, match="engine"):
        integrate(frames6, GEOM, npt=100, engine="fast")
    with pytest.raises(ValueError, match="error_model"):
        integrate(frames6, GEOM, npt=100, error_model="azimuthal")
    for algo in ("lut", "csc"):
        q = integrate(frames6, GEOM, npt=100, method=("bbox", algo, "cython"))
        assert q.attrs["engine"] == "xrdflow"
        _, ref, _ = pyfai_reference(frames6, GEOM, npt=100, method=("bbox", algo, "cython"))
        assert_close(q.values, ref)


# ----------------------------------------------------------------------------- real data
def test_real_pixium_frames_all_methods():
    import fabio

    folder = shared("lightform-i12-ti64-pixium")
    frames = np.stack([fabio.open(str(folder / f"pixium_0315{i}.tif")).data for i in range(3)])
    geom = Geometry.from_poni(folder / "DLS_CeO2_1200mm_pyFAI.poni")
    mask = np.array(fabio.open(str(folder / "DLS_CeO2_1200mm.mask")).data) != 0
    for method in METHODS:
        got = integrate(frames, geom, npt=1500, unit="2th_deg", method=method, mask=mask,
                        polarization_factor=0.99, error_model="poisson").compute()
        assert got.attrs["engine"] == "xrdflow"
        _, ref, sig = pyfai_reference(frames, geom, npt=1500, unit="2th_deg", method=method, mask=mask,
                             polarization_factor=0.99, error_model="poisson")
        assert_close(got.values, ref)
        assert_close(got.I_errors.values, sig)


def test_real_pilatus_flipud_with_gaps():
    import fabio

    folder = shared("dioptas-fe3o4-map-pilatus1m")
    geom = Geometry.from_poni(folder / "Fe3O4C_map_derived_from_xy_header.poni", orientation="flipud")
    names = ["Fe3O4C_M1_map_1_P1_E1_001", "Fe3O4C_M1_map_13_P1_E1_001"]
    frames = np.stack([fabio.open(str(folder / f"{n}.tif")).data for n in names])
    assert (frames < 0).any()  # module gaps
    for method in METHODS:
        for mask_negative in (True, False):
            got = integrate(frames, geom, npt=1000, unit="2th_deg", method=method,
                            polarization_factor=0.99, mask_negative=mask_negative).compute()
            _, ref, _ = pyfai_reference(frames, geom, npt=1000, unit="2th_deg", method=method,
                               polarization_factor=0.99, mask_negative=mask_negative)
            assert_close(got.values, ref)


@pytest.mark.parametrize("split", ["no", "bbox", "full"])
def test_narrow_radial_range_uses_active_pixels_and_matches_pyfai(split):
    """Strain work integrates a narrow q window finely: most pixels then have no matrix entry,
    and the engine keeps rows for the active ones only (25x less work at 2048^2, 4 % active).
    The result must stay identical to pyFAI's integrate1d."""
    import dask.array as da
    import xarray as xr

    from xrdflow import engines
    from xrdflow.geometry import Geometry
    from xrdflow import integrate

    size = 256
    geom = Geometry(dist=0.3, poni1=0.0262, poni2=0.0248, rot1=0.003, rot2=-0.002, wavelength=1.4235e-11,
                    detector="Detector", pixel1=2e-4, pixel2=2e-4, max_shape=(size, size))
    rng = np.random.default_rng(5)
    frames = rng.poisson(50, (3, size, size)).astype(np.uint16)
    arr = xr.DataArray(da.from_array(frames, chunks=(1, -1, -1)), dims=("frame", "y", "x"))
    method = (split, "csr", "cython")
    kw = dict(npt=400, radial_range=(40.0, 45.0), method=method, polarization_factor=0.99)
    ours = integrate(arr, geom, engine="xrdflow", **kw).values
    assert any("active pixels" in d for d in engines.engine_cache_info()["matrices"])
    ai = geom.to_pyfai()
    ref = np.array([ai.integrate1d(f, 400, unit="q_nm^-1", radial_range=(40.0, 45.0), method=method,
                                   polarization_factor=0.99).intensity for f in frames])
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("max_k", [8, 2])
def test_ell_layout_holds_exactly_the_csr_matrix(max_k):
    """The pixel-major ELL rows plus the COO overflow hold every CSR entry once, at its
    bin, with its coefficient; padding slots add nothing (coefficient 0, or bins past nb)."""
    rng = np.random.default_rng(11)
    npix, nb = 600, 40
    rows = [np.unique(rng.integers(0, npix, rng.integers(0, 80))) for _ in range(nb)]
    for b in range(3, 30):  # pixel 7 in 27 bins: beyond any K, so it overflows
        rows[b] = np.union1d(rows[b], [7])
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows).astype(np.int32)
    coef = rng.uniform(0.1, 1.0, indices.shape[0]).astype(np.float32)
    dense = np.zeros((nb, npix))
    dense[np.repeat(np.arange(nb), np.diff(indptr)), indices] = coef

    K, active, ebins, ecoef, opix, obin, ocoef = engines.to_ell(indptr, indices, coef, npix, max_k=max_k)
    assert opix.shape[0] > 0  # the overflow path is exercised
    rows_of = np.arange(npix) if active is None else active
    rebuilt = np.zeros((nb + K, npix))
    contig = ebins.shape[1] == 1
    for r, p in enumerate(rows_of):
        for t in range(K):
            b = int(ebins[r, 0]) + t if contig else int(ebins[r, t])
            rebuilt[b, p] += ecoef[r * K + t]
    np.add.at(rebuilt, (obin, opix), ocoef)
    np.testing.assert_array_equal(rebuilt[:nb], dense.astype(np.float32))
    assert not rebuilt[nb:].any()
    # overflow ordered by pixel, then bin: the order the kernels add entries in
    assert np.all(np.diff(opix.astype(np.int64) * (nb + 1) + obin) > 0)


def test_matrix_shipped_once_to_worker_processes_instead_of_rebuilt():
    """integrate() builds the matrix in the client; share_with_workers hands it to each worker
    process, which then integrates without a build of its own, to the same result."""
    distributed = pytest.importorskip("distributed")
    frames = _frames(6, dtype=np.uint16, negative=False)
    engines.clear_engine_cache()
    integrate(frames, GEOM, npt=90, method=("no", "csr", "cython"))  # an older matrix: not sent
    patterns = integrate(frames, GEOM, npt=150, method=("bbox", "csr", "cython"), frames_per_chunk=2)
    expected = patterns.compute(scheduler="sync")
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None) as client:
        assert engines.share_with_workers(client) == 2
        assert engines.share_with_workers(client) == 0  # already held: nothing sent twice
        got = client.compute(patterns).result()
        info = client.run(engines.engine_cache_info)
    np.testing.assert_array_equal(got.values, expected.values)
    assert all(i["builds"] == 0 and i["entries"] == 1 for i in info.values()), info
