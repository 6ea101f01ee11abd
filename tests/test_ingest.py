"""Ingest and open_frames: bit-exact round trips, order, bad frames, resume, laziness, layout."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

import xrdflow
from conftest import write_tiffs

ingest_mod = importlib.import_module("xrdflow._ingest")
nexus = importlib.import_module("xrdflow.nexus")
raw_layout = importlib.import_module("xrdflow.nexus.raw")


def read_fabio(path):
    return fabio.open(str(path)).data


@pytest.mark.parametrize("compression", ["bitshuffle", "gzip", "none"])
def test_round_trip_bit_exact_and_ordered(small_frames, tmp_path, compression):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    report = xrdflow.ingest(tmp_path / "src", out, energy_kev=87.1, compression=compression)
    assert report.n_frames == 12 and report.n_written == 12 and not report.bad
    da = xrdflow.open_frames(out)
    assert da.dims == ("frame", "y", "x")
    assert da.dtype == np.uint16
    # numeric order (frame_2 before frame_10), not lexical
    np.testing.assert_array_equal(da["frame"].values, np.arange(1, 13))
    assert list(da["source_file"].values) == [p.name for p in paths]
    np.testing.assert_array_equal(da.values, frames)  # bit-exact, same dtype
    assert da.attrs["energy_kev"] == 87.1
    assert da.attrs["wavelength_a"] == pytest.approx(12.398419843320026 / 87.1)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32, np.float32])
def test_chunk_matches_bitshuffle_reference(dtype):
    """The chunk built through bitshuffle's C API in a reused buffer is byte for byte the one
    its Python API gives (header + blocks), for every detector dtype and an odd frame size
    (a trailing partial block)."""
    assert importlib.import_module("xrdflow._bshuf").c_api() is not None, "bitshuffle's C API was not found"
    rng = np.random.default_rng(3)
    data = rng.poisson(30.0, size=(37, 53)).astype(dtype)
    reference = ingest_mod._compress(data, "bitshuffle")
    pool, owned = ingest_mod._Buffers(), []
    for _ in range(2):  # the second time round the buffer is reused, with stale bytes in it
        chunk = ingest_mod._compress(data, "bitshuffle", pool, owned)
        assert bytes(chunk) == reference
        pool.give(*owned)
        owned.clear()


def test_sources_as_glob_list_and_file(small_frames, tmp_path):
    frames, paths = small_frames
    for sources in (str(tmp_path / "src" / "frame_*.tif"), list(reversed(paths))):
        out = tmp_path / "g.nxs"
        xrdflow.ingest(sources, out, energy_kev=30.0, overwrite=True)
        np.testing.assert_array_equal(xrdflow.open_frames(out).values, frames)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        xrdflow.ingest(str(tmp_path / "src" / "nothing_*.tif"), tmp_path / "n.nxs", energy_kev=30.0)


def test_frame_numbers_from_names():
    names = [Path(f"Fe3O4C_M1_map_{i}_P1_E1_001.tif") for i in (1, 2, 3, 6, 7, 8, 11, 12, 13)]
    np.testing.assert_array_equal(ingest_mod.frame_numbers(names), [1, 2, 3, 6, 7, 8, 11, 12, 13])
    assert [p.name for p in ingest_mod.find_frames(list(reversed(names)))] == [p.name for p in names]
    np.testing.assert_array_equal(ingest_mod.frame_numbers([Path("a.tif"), Path("b.tif")]), [0, 1])


@pytest.mark.parametrize(
    "folder,flip",
    [("lightform-i12-ti64-pixium", False), ("dioptas-fe3o4-map-pilatus1m", False)],
)
def test_real_frames_bit_exact(shared_data, tmp_path, folder, flip):
    src = shared_data(folder)
    out = tmp_path / "real.nxs"
    report = xrdflow.ingest(src, out, energy_kev=89.0)
    paths = ingest_mod.find_frames(src)
    assert report.n_written == len(paths) >= 6
    da = xrdflow.open_frames(out)
    for i, path in enumerate(paths):
        expected = read_fabio(path)
        got = da.isel(frame=i).values
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_strain_log_matched_by_frame_number_and_order(small_frames, tmp_path):
    log = tmp_path / "log.csv"
    # rows in another order, with extra frames: matched by the frame column
    rows = [(f, 0.001 * f, 10.0 * f, 0.5 * f) for f in range(20, 0, -1)]
    log.write_text("frame,applied_strain,load_N,time_s\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(tmp_path / "src", out, energy_kev=87.1, strain_log=log)
    da = xrdflow.open_frames(out)
    np.testing.assert_allclose(da["applied_strain"].values, 0.001 * np.arange(1, 13))
    assert da["load_N"].attrs["units"] == "N"
    assert da["time_s"].attrs["units"] == "s"
    # a log without a frame column must have one row per frame
    bad = tmp_path / "bad.csv"
    bad.write_text("applied_strain\n0.1\n0.2\n")
    with pytest.raises(ValueError, match=r"strain_log: .*bad.csv has 2 rows for 12 frames"):
        xrdflow.ingest(tmp_path / "src", tmp_path / "x.nxs", energy_kev=87.1, strain_log=bad)
    assert not (tmp_path / "x.nxs").exists()


@pytest.mark.parametrize(
    "breakage,reason",
    [
        ("missing", "missing"),
        ("garbage", "unreadable"),
        ("truncated", "truncated"),
        ("empty", "empty file"),
        ("shape", "wrong shape"),
        ("dtype", "wrong dtype"),
    ],
)
def test_bad_frame_named_or_skipped(small_frames, tmp_path, breakage, reason):
    frames, paths = small_frames
    victim = paths[4]
    if breakage == "missing":
        victim.unlink()
    elif breakage == "garbage":
        victim.write_bytes(b"this is not a detector image at all" * 100)
    elif breakage == "truncated":
        blob = victim.read_bytes()
        victim.write_bytes(blob[: len(blob) // 2])
    elif breakage == "empty":
        victim.write_bytes(b"")
    elif breakage == "shape":
        fabio.tifimage.TifImage(data=frames[4][:-1]).write(str(victim))
    elif breakage == "dtype":
        fabio.tifimage.TifImage(data=frames[4].astype(np.int32)).write(str(victim))
    out = tmp_path / "raw.nxs"
    with pytest.raises(ingest_mod.BadFrameError, match=rf"{victim.name}: .*{reason}"):
        xrdflow.ingest(paths, out, energy_kev=87.1)
    assert not out.exists()

    report = xrdflow.ingest(paths, out, energy_kev=87.1, skip_bad=True)
    assert [name for name, _ in report.bad] == [victim.name]
    assert reason in report.bad[0][1]
    with pytest.warns(UserWarning, match=victim.name):
        good = xrdflow.open_frames(out)
    keep = [i for i in range(12) if i != 4]
    np.testing.assert_array_equal(good.values, frames[keep])  # no other frame lost
    everything = xrdflow.open_frames(out, valid_only=False)
    assert everything.sizes["frame"] == 12
    assert not bool(everything["valid"][4]) and bool(everything["valid"][3])
    with h5py.File(out) as f:
        err = f["entry/instrument/detector/frame_error"][4]
        assert reason in (err.decode() if isinstance(err, bytes) else err)


class Interrupt(BaseException):
    """Stands in for Ctrl-C / SIGTERM in the middle of a run."""


def test_resume_after_interruption(small_frames, tmp_path, monkeypatch):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    real_read = ingest_mod._read_one
    calls = []

    def flaky(frame, *args):
        calls.append(frame.path.name)
        if frame.index == 7:
            raise Interrupt()
        return real_read(frame, *args)

    monkeypatch.setattr(ingest_mod, "_read_one", flaky)
    with pytest.raises(Interrupt):
        xrdflow.ingest(paths, out, energy_kev=87.1, n_workers=1)
    assert not out.exists(), "a half-written file stands under the final name"
    assert nexus.partial_path(out).exists()

    monkeypatch.setattr(ingest_mod, "_read_one", lambda frame, *a: (calls.append(frame.path.name), real_read(frame, *a))[1])
    calls.clear()
    report = xrdflow.ingest(paths, out, energy_kev=87.1, n_workers=1)
    assert report.n_reused == 7 and report.n_written == 5
    assert calls == [p.name for p in paths[7:]]  # only the frames not yet stored are read
    assert not nexus.partial_path(out).exists()
    np.testing.assert_array_equal(xrdflow.open_frames(out).values, frames)


def test_resume_detects_corrupted_chunk(small_frames, tmp_path, monkeypatch):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(paths, out, energy_kev=87.1, compression="none")
    partial = nexus.partial_path(out)
    os.replace(out, partial)
    with h5py.File(partial, "r+") as f:  # a torn write: chunk 3 has other bytes than recorded
        f["entry/instrument/detector/data"][3] = 0
    report = xrdflow.ingest(paths, out, energy_kev=87.1, compression="none")
    assert report.n_written == 1 and report.n_reused == 11
    np.testing.assert_array_equal(xrdflow.open_frames(out).values, frames)


def test_reingest_identical_is_noop_and_changed_source_is_not(small_frames, tmp_path):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(paths, out, energy_kev=87.1)
    stat = out.stat()
    report = xrdflow.ingest(paths, out, energy_kev=87.1)
    assert report.n_written == 0 and report.n_reused == 12
    assert out.stat().st_mtime_ns == stat.st_mtime_ns
    changed = frames[2].copy()
    changed[0, 0] ^= 1
    fabio.tifimage.TifImage(data=changed).write(str(paths[2]))
    report = xrdflow.ingest(paths, out, energy_kev=87.1)
    assert report.n_written == 12
    np.testing.assert_array_equal(xrdflow.open_frames(out).values[2], changed)


def test_second_writer_is_refused(small_frames, tmp_path):
    out = tmp_path / "raw.nxs"
    with nexus.output_lock(out):
        with pytest.raises(nexus.OutputLockedError, match="raw.nxs"):
            xrdflow.ingest(small_frames[1], out, energy_kev=87.1)
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1)  # lock released afterwards


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"energy_kev": -1}, "energy_kev"),
        ({"energy_kev": float("nan")}, "energy_kev"),
        ({"energy_kev": 87.1, "compression": "zip"}, "compression"),
        ({"energy_kev": 87.1, "workers": 0}, "workers"),
    ],
)
def test_bad_arguments_name_the_parameter(small_frames, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        xrdflow.ingest(small_frames[1], tmp_path / "raw.nxs", **kwargs)
    assert not list(tmp_path.glob("raw.nxs*"))


def test_open_frames_is_lazy_and_chunked_by_whole_frames(small_frames, tmp_path, monkeypatch):
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1)
    reads = []
    real = raw_layout._H5Frames.__getitem__
    monkeypatch.setattr(raw_layout._H5Frames, "__getitem__", lambda self, key: (reads.append(key), real(self, key))[1])
    da = xrdflow.open_frames(out, frames_per_chunk=5)
    sub = da.isel(frame=slice(2, 9)).astype("float32") * 2
    assert reads == []  # opening and building on it reads no pixel
    assert da.chunks == ((5, 5, 2), (64,), (48,))
    np.testing.assert_array_equal(sub.values, small_frames[0][2:9].astype("float32") * 2)
    assert reads  # computing does
    for key in reads:  # every read covers whole frames
        assert key[1] == slice(0, 64, None) and key[2] == slice(0, 48, None)


def test_open_frames_under_distributed(small_frames, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1)
    da = xrdflow.open_frames(out, frames_per_chunk=3)
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None) as client:
        total = client.compute(da.astype("int64").sum(("y", "x"))).result()
    np.testing.assert_array_equal(total.values, small_frames[0].astype("int64").sum((1, 2)))


@pytest.mark.parametrize("compression", ["bitshuffle", "none", "gzip"])
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_open_frames_direct_chunk_read_matches_hdf5(tmp_path, compression, dtype):
    """Frames decoded from their raw chunks (read_direct_chunk + bitshuffle's decoder, or
    the bytes as stored) equal HDF5's own filtered read, bit for bit, for whole-frame and
    partial selections, and a frame never stored (bad) reads as HDF5's fill value."""
    rng = np.random.default_rng(5)
    frames = rng.poisson(40.0, size=(7, 33, 29)).astype(dtype)
    frames[1, 3, 4] = -7 if np.dtype(dtype).kind != "u" else 9
    paths = write_tiffs(tmp_path / "src", frames)
    paths[4].write_bytes(b"not a tiff")
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(paths, out, energy_kev=87.1, compression=compression, skip_bad=True)
    with h5py.File(out, "r") as f:
        dset = f["entry/instrument/detector/data"]
        expected = dset[()]  # through HDF5's filter pipeline
        codec = raw_layout._direct_codec(dset)
        assert codec == {"bitshuffle": "bitshuffle", "none": "raw", "gzip": None}[compression]
        if codec is not None:
            for frames_range in (range(0, 7), range(2, 5), range(6, 7)):
                got = raw_layout._read_frames_direct(dset, frames_range, codec)
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected[frames_range.start:frames_range.stop])
    with pytest.warns(UserWarning, match="invalid"):
        good = xrdflow.open_frames(out, frames_per_chunk=3)
    everything = xrdflow.open_frames(out, frames_per_chunk=3, valid_only=False)
    np.testing.assert_array_equal(everything.values, expected)
    assert not everything.values[4].any()  # the bad frame: fill value
    np.testing.assert_array_equal(good.values, frames[[0, 1, 2, 3, 5, 6]])
    np.testing.assert_array_equal(everything[:, 5:9, 2:3].values, frames[:, 5:9, 2:3] * (np.arange(7) != 4)[:, None, None])


def test_open_frames_corrupt_chunk_names_file_and_frame(small_frames, tmp_path):
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1)
    with h5py.File(out, "r+") as f:
        dset = f["entry/instrument/detector/data"]
        _, chunk = dset.id.read_direct_chunk((3, 0, 0))
        dset.id.write_direct_chunk((3, 0, 0), chunk[:12] + bytes(len(chunk) - 12))  # zeroed blocks
    with pytest.raises(ValueError, match=r"raw\.nxs: frame 3: corrupt"):
        xrdflow.open_frames(out, frames_per_chunk=4).values


def test_open_frames_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nxs"):
        xrdflow.open_frames(tmp_path / "nope.nxs")
    junk = tmp_path / "junk.nxs"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(OSError, match="junk.nxs"):
        xrdflow.open_frames(junk)


def test_nexus_layout(small_frames, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("frame,applied_strain\n" + "".join(f"{i},{i / 100}\n" for i in range(1, 13)))
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1, strain_log=log, detector="Perkin")
    with h5py.File(out) as f:
        assert f.attrs["default"] == "entry"
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["default"] == "data"
        assert f["entry/instrument"].attrs["NX_class"] == "NXinstrument"
        det = f["entry/instrument/detector"]
        assert det.attrs["NX_class"] == "NXdetector"
        data = det["data"]
        assert data.chunks == (1, 64, 48) and data.dtype == np.uint16
        assert 32008 in [data.id.get_create_plist().get_filter(i)[0]
                         for i in range(data.id.get_create_plist().get_nfilters())]
        assert f["entry/instrument/monochromator/energy"].attrs["units"] == "keV"
        assert f["entry/instrument/monochromator/wavelength"].attrs["units"] == "angstrom"
        assert f["entry/sample"].attrs["NX_class"] == "NXsample"
        assert f["entry/sample/applied_strain"].shape == (12,)
        nxdata = f["entry/data"]
        assert nxdata.attrs["NX_class"] == "NXdata" and nxdata.attrs["signal"] == "data"
        assert nxdata["data"].id == data.id  # linked, not copied
        shas = det["source_sha256"][()]
        import hashlib

        assert shas[0].decode() == hashlib.sha256(small_frames[1][0].read_bytes()).hexdigest()
        proc = f["entry/ingest"]
        assert proc.attrs["NX_class"] == "NXprocess"
        assert proc["version"][()].decode() == xrdflow.__version__


def test_nexusformat_reads_raw_file(small_frames, tmp_path):
    nexusformat = pytest.importorskip("nexusformat.nexus")
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(small_frames[1], out, energy_kev=87.1)
    root = nexusformat.nxload(str(out))
    assert root.entry.plottable_data.nxsignal.shape == (12, 64, 48)


def test_resume_rereads_a_source_changed_since_interruption(small_frames, tmp_path):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    xrdflow.ingest(paths, out, energy_kev=87.1)
    os.replace(out, nexus.partial_path(out))  # as if killed before the final rename
    changed = frames[5] // 2
    fabio.tifimage.TifImage(data=changed).write(str(paths[5]))
    report = xrdflow.ingest(paths, out, energy_kev=87.1)
    assert report.n_written == 1 and report.n_reused == 11
    np.testing.assert_array_equal(xrdflow.open_frames(out).values[5], changed)


def test_ingest_memory_does_not_grow_with_frames(tmp_path):
    """Each compressed chunk must be released once written (a list of every frame kept them
    all: 2000 frames of 2048^2 reached 8.6 GB). Python-level peak memory (tracemalloc sees
    the chunks, which are bytes) must not follow the number of frames."""
    import tracemalloc

    rng = np.random.default_rng(0)
    peaks = {}
    for n in (8, 48):
        paths = write_tiffs(tmp_path / f"src{n}", rng.integers(0, 4000, size=(n, 256, 256), dtype=np.uint16))
        tracemalloc.start()
        xrdflow.ingest(paths, tmp_path / f"raw{n}.nxs", energy_kev=87.1, n_workers=2)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    chunk = 256 * 256 * 2  # one frame, uncompressed: an upper bound of one compressed chunk
    assert peaks[48] - peaks[8] < 10 * chunk, peaks


def test_workers_is_a_deprecated_alias_of_n_workers(small_frames, tmp_path):
    frames, paths = small_frames
    with pytest.warns(DeprecationWarning, match="n_workers"):
        report = xrdflow.ingest(paths, tmp_path / "raw.nxs", energy_kev=87.1, workers=1)
    assert report.n_written == len(paths)
    np.testing.assert_array_equal(xrdflow.open_frames(tmp_path / "raw.nxs").values, frames)
    with pytest.raises(ValueError, match="n_workers"):
        xrdflow.ingest(paths, tmp_path / "raw2.nxs", energy_kev=87.1, n_workers=0)
