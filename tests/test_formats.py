"""Every accepted detector format decodes bit-exact when whole and is refused, by name and
reason, when truncated: fabio pads short EDFs, unpacks a short MAR345 stream into zeros and
HDF5 returns fill values, so a cut file would otherwise pass as a frame with a dark band."""

from __future__ import annotations

import bz2
import gzip
import importlib
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

import xrdflow

formats = importlib.import_module("xrdflow._formats")
mar345 = importlib.import_module("xrdflow._mar345")

SHAPE = (64, 64)  # MAR345 images are square


def _pixels(seed: int, dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.poisson(300, SHAPE)
    data[20:24, 10:50] = 20000  # a ring-like band: the stream is not uniform
    return data.astype(dtype)


def _write_tiff(path, data):
    fabio.tifimage.TifImage(data=data).write(str(path))


def _write_tiff_deflate(path, data):
    import tifffile

    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=8)


def _write_edf(path, data):
    fabio.edfimage.EdfImage(data=data).write(str(path))


def _write_cbf(path, data):
    fabio.cbfimage.CbfImage(data=data.astype(np.int32)).write(str(path))


def _write_mar345(path, data):
    img = fabio.mar345image.Mar345Image(data=data)
    img.byteorder = "<"  # fabio 2026.6 leaves "|" on a new image, which its writer refuses
    img.write(str(path))


def _write_hdf5(path, data):
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="data")
        nxdata = entry.create_group("data")
        nxdata.attrs.update(NX_class="NXdata", signal="data")
        nxdata.create_dataset("data", data=data[None], chunks=(1, 16, 64))
        entry["exposure_time"] = np.arange(4.0)  # a second dataset: the default signal decides


def _write_edf_gz(path, data):
    plain = path.with_suffix("")
    _write_edf(plain, data)
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()


def _write_cbf_bz2(path, data):
    plain = path.with_suffix("")
    _write_cbf(plain, data)
    path.write_bytes(bz2.compress(plain.read_bytes()))
    plain.unlink()


WRITERS = {
    "tif": (".tif", _write_tiff),
    "tif-deflate": (".tif", _write_tiff_deflate),
    "edf": (".edf", _write_edf),
    "cbf": (".cbf", _write_cbf),
    "mar345": (".mar2300", _write_mar345),
    "hdf5": (".h5", _write_hdf5),
    "edf.gz": (".edf.gz", _write_edf_gz),
    "cbf.bz2": (".cbf.bz2", _write_cbf_bz2),
}


def _make(folder: Path, kind: str, n: int = 1, start: int = 0) -> list[Path]:
    suffix, writer = WRITERS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"frame_{i:03d}{suffix}"
        writer(path, _pixels(i))
        paths.append(path)
    return paths


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_whole_file_decodes_bit_exact(tmp_path, kind):
    (path,) = _make(tmp_path, kind)
    data = formats.decode(path, path.read_bytes())
    expected = _pixels(0)
    assert data.shape == SHAPE
    np.testing.assert_array_equal(data.astype(np.int64), expected.astype(np.int64))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_truncated_file_is_refused_with_its_name(tmp_path, kind, fraction):
    (path,) = _make(tmp_path, kind)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(xrdflow.BadFrameError, match=rf"{path.name}: (truncated|incomplete)") as info:
        formats.decode(path, path.read_bytes())
    assert info.value.path == str(path)


def test_mar345_cut_anywhere_in_its_packed_stream(tmp_path):
    """The MAR case that passed before: fabio unpacks what is there and zero-fills the rest."""
    (path,) = _make(tmp_path, "mar345")
    blob = path.read_bytes()
    start = blob.index(b"CCP4 packed image")
    for cut in np.linspace(start + 40, len(blob) - 1, 25).astype(int):
        short = tmp_path / "short.mar2300"
        short.write_bytes(blob[:cut])
        with pytest.raises(xrdflow.BadFrameError, match="short.mar2300: truncated .* of the 64 x 64 pixels"):
            formats.decode(short, short.read_bytes())


def test_pck_walker_counts_every_pixel_of_a_whole_stream():
    """The block walker covers every pixel of fabio's packed streams of every block width
    (0 to 32 bits a pixel), and not when the stream is cut."""
    from fabio.compression import compPCK

    rng = np.random.default_rng(3)
    for scale in (0, 3, 12, 60, 120, 3000, 30000):
        data = np.clip(rng.normal(30000, scale + 1e-9, (37, 53)), 0, 65535).astype(np.uint16)
        stream = compPCK(data)
        match = mar345.PCK_KEY.search(stream)
        body = np.frombuffer(stream, np.uint8, offset=match.end())
        assert mar345.pck_pixels(body, 37 * 53, 6, mar345.PCK_BITS_V1) >= 37 * 53  # the last block may run past the end
        for cut in (0.05, 0.3, 0.5):  # fabio's packer leaves slack after noisy 16-bit blocks
            assert mar345.pck_pixels(body[: int(cut * body.size)], 37 * 53, 6, mar345.PCK_BITS_V1) < 37 * 53


def test_hdf5_missing_chunk_is_incomplete(tmp_path):
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("data", shape=SHAPE, dtype=np.uint16, chunks=(16, 64))
        dset[:32] = _pixels(0)[:32]  # the detector stopped half way: 2 of 4 chunks
    with pytest.raises(xrdflow.BadFrameError, match=r"partial.h5: incomplete \(/data: 2 of 4 chunks"):
        formats.decode(path, path.read_bytes())


def test_hdf5_ambiguous_and_multi_frame_files_say_why(tmp_path):
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f["a"] = _pixels(0)
        f["b"] = _pixels(1)
    with pytest.raises(xrdflow.BadFrameError, match="two.h5: cannot tell which dataset.*/a, /b"):
        formats.decode(two, two.read_bytes())
    stack = tmp_path / "stack.h5"
    with h5py.File(stack, "w") as f:
        f["data"] = np.stack([_pixels(0), _pixels(1)])
    with pytest.raises(xrdflow.BadFrameError, match="stack.h5: holds 2 frames"):
        formats.decode(stack, stack.read_bytes())


@pytest.mark.parametrize("kind", ["tif", "edf", "cbf", "mar345", "hdf5"])
def test_ingest_names_a_truncated_frame_and_skip_bad_keeps_the_others(tmp_path, kind):
    paths = _make(tmp_path / "src", kind, n=5)
    victim = paths[2]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) * 2 // 3])
    out = tmp_path / "raw.nxs"
    with pytest.raises(xrdflow.BadFrameError, match=rf"{victim.name}: (truncated|incomplete)"):
        xrdflow.ingest(paths, out, energy_kev=87.1)
    assert not out.exists()

    report = xrdflow.ingest(paths, out, energy_kev=87.1, skip_bad=True)
    assert [name for name, _ in report.bad] == [victim.name]
    with pytest.warns(UserWarning, match=victim.name):
        good = xrdflow.open_frames(out)
    expected = np.stack([_pixels(i) for i in (0, 1, 3, 4)]).astype(np.int64)
    np.testing.assert_array_equal(good.values.astype(np.int64), expected)


def test_hdf5_frame_compressed_with_a_plugin_filter(tmp_path):
    """Detectors write their HDF5 frames with bitshuffle-LZ4 (Eiger, Pilatus4...): decoding
    loads the filters itself (checked in a fresh interpreter, where nothing imported them)."""
    import subprocess
    import sys

    import hdf5plugin

    path = tmp_path / "eiger_like.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=_pixels(3)[None], chunks=(1, 64, 64), **hdf5plugin.Bitshuffle())
    np.save(tmp_path / "expected.npy", _pixels(3))
    code = ("import sys, numpy as np; from pathlib import Path; from xrdflow._formats import decode; "
            "p = Path(sys.argv[1]); d = decode(p, p.read_bytes()); "
            "assert 'hdf5plugin' in sys.modules; np.testing.assert_array_equal(d, np.load(sys.argv[2]))")
    run = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "expected.npy")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_tiff_with_any_header_bit_flipped_is_read_or_named_bad(tmp_path):
    """Every single-bit error in a TIFF header gives the frame or a BadFrameError, never
    another exception (a negative strip offset crashed numpy, a shapeless page numpy.prod)."""
    import logging

    ingest = importlib.import_module("xrdflow._ingest")
    (path,) = _make(tmp_path, "tif")
    blob = path.read_bytes()
    logging.disable(logging.CRITICAL)  # fabio and tifffile log every damaged file
    try:
        for i in range(200):
            for bit in range(8):
                damaged = bytearray(blob)
                damaged[i] ^= 1 << bit
                path.write_bytes(bytes(damaged))
                frame = ingest._read_one(ingest._Frame(0, path), SHAPE, np.dtype(np.uint16), "none")
                assert (frame.error is None) != (frame.chunk is None), (i, bit)
    finally:
        logging.disable(logging.NOTSET)


def _write_mar345_reference(path, data):
    """A MAR345 file whose packed image comes from CCP4's reference packer (fabio's own
    packer corrupts values above 32767): fabio's header and high-intensity records."""
    from fabio.ext.mar345_IO import compress_pck

    _write_mar345(path, data)
    blob = path.read_bytes()
    key = blob.index(b"\nCCP4 packed image")
    path.write_bytes(blob[:key] + compress_pck(np.minimum(data, 65535).astype(np.int32), use_CCP4=True))


@pytest.mark.parametrize("shape", [(64, 64), (48, 64), (37, 53), (300, 300), (2, 3)])  # width 1 is degenerate
@pytest.mark.parametrize("kind", ["flat", "poisson", "16-bit noise", "high pixels"])
def test_mar345_decodes_the_reference_packer_bit_exact(tmp_path, shape, kind):
    """Our pck decoder gives back the pixels CCP4's reference packer packed, over the whole
    16-bit range, and the header's high-intensity records (pixels above 65535)."""
    rng = np.random.default_rng(sum(shape) + len(kind))
    data = {"flat": np.full(shape, 7), "poisson": rng.poisson(300, shape),
            "16-bit noise": rng.integers(0, 65536, shape),
            "high pixels": rng.integers(0, 3000, shape)}[kind].astype(np.int32)
    if kind == "high pixels":
        flat, n = data.reshape(-1), min(data.size, 11)
        flat[rng.choice(flat.size, n, replace=False)] = rng.integers(65536, 2**30, n)
    path = tmp_path / "frame.mar3450"
    _write_mar345_reference(path, data)
    decoded = formats.decode(path, path.read_bytes())
    assert decoded.dtype == np.uint32 and decoded.shape == shape
    np.testing.assert_array_equal(decoded, data)


def test_mar345_block_running_past_the_image_is_never_written_past_it(tmp_path):
    """fabio's packer ends noisy images with a block that runs past the last pixel (and its
    decoder then writes past its buffer: the heap is corrupted). Ours stops at the image."""
    from fabio.compression import compPCK

    data = np.random.default_rng(5).integers(0, 65536, (64, 64)).astype(np.int32)
    stream = compPCK(data)
    body = np.frombuffer(stream, np.uint8, offset=mar345.PCK_KEY.search(stream).end())
    assert mar345.pck_pixels(body, data.size, 6, mar345.PCK_BITS_V1) > data.size  # the property
    out = np.zeros(data.size + 256, np.uint32)  # room to see a write past the image
    assert mar345._pck_decode(body, 64, data.size, 6, mar345.PCK_BITS_V1, out) == data.size
    assert not out[data.size:].any()


def _finishes(func, seconds: float = 30.0):
    """``func()`` in a thread, whatever it raises; False if it still runs after ``seconds``."""
    import threading

    done = threading.Event()

    def target():
        try:
            func()
        except BaseException:  # noqa: BLE001 - only the hang matters here
            pass
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(seconds)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_any_header_bit_flipped_gives_the_frame_or_a_named_bad_frame(tmp_path, kind):
    """Every single-bit error in the first 600 bytes of a file (its header, in every format)
    and at 60 places after gives the frame or a bad frame with its reason: never an
    exception, a hang (fabio loops for ever on a damaged CBF section marker) or a crash
    (fabio's MAR345 decoder wrote past its buffer)."""
    import logging

    ingest = importlib.import_module("xrdflow._ingest")
    (path,) = _make(tmp_path, kind)
    blob = path.read_bytes()
    rng = np.random.default_rng(7)
    places = sorted(set(range(min(600, len(blob)))) | set(rng.integers(0, len(blob), 60).tolist()))
    logging.disable(logging.CRITICAL)  # fabio and tifffile log every damaged file
    try:
        for i in places:
            for bit in (0, 3, 7):
                damaged = bytearray(blob)
                damaged[i] ^= 1 << bit
                path.write_bytes(bytes(damaged))
                frames = []
                read = lambda: frames.append(ingest._read_one(ingest._Frame(0, path), SHAPE, None, "none"))  # noqa: E731
                assert _finishes(read), f"byte {i} bit {bit}: decoding hangs"
                assert frames, f"byte {i} bit {bit}: {kind} decoding raised instead of naming a bad frame"
                frame = frames[0]
                assert (frame.error is None) != (frame.chunk is None), (i, bit)
    finally:
        logging.disable(logging.NOTSET)
