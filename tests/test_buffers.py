"""Recycled frame buffers: memory is reused only once no array or view can see it."""

import gc

import numpy as np
import pytest

from xrdflow import _buffers


@pytest.fixture(autouse=True)
def empty_pool():
    _buffers.clear_pool()
    yield
    _buffers.clear_pool()


def _address(a):
    return a.__array_interface__["data"][0]


def test_memory_is_reused_only_after_the_last_view_is_gone():
    a = _buffers.take((3, 64, 64), np.uint16)
    assert a.flags.c_contiguous and a.flags.writeable and a.shape == (3, 64, 64) and a.dtype == np.uint16
    a[:] = 7
    addr = _address(a)
    views = [a[1], a.reshape(-1)[::5], a.view(np.int16), a.T]
    del a
    gc.collect()
    assert _buffers.pool_info()["buffers"] == 0  # the views still hold it
    b = _buffers.take((3, 64, 64), np.uint16)
    assert _address(b) != addr  # not handed out twice
    b[:] = 9
    assert all((np.asarray(v) == 7).all() for v in views)  # the views' data is untouched
    del views
    gc.collect()
    assert _buffers.pool_info() == {"buffers": 1, "nbytes": 3 * 64 * 64 * 2}
    c = _buffers.take((64, 3, 64), np.int16)  # same size, any shape and dtype
    assert _address(c) == addr
    assert _buffers.pool_info()["buffers"] == 0


def test_the_pool_keeps_a_bounded_number_of_bytes(monkeypatch):
    monkeypatch.setattr(_buffers, "POOL_BYTES", 3 * 4096)
    arrays = [_buffers.take((4096,), np.uint8) for _ in range(5)]
    del arrays
    gc.collect()
    assert _buffers.pool_info() == {"buffers": 3, "nbytes": 3 * 4096}


def test_frames_read_into_recycled_memory_stay_what_was_read(tmp_path):
    """open_frames' chunks come from the pool: a chunk kept by the caller is never overwritten
    by the next chunk read, and every chunk is bit-exact with h5py's own read."""
    import h5py
    import hdf5plugin

    from xrdflow.nexus import raw as nraw

    frames = np.random.default_rng(0).integers(0, 60000, (6, 32, 48), dtype=np.uint16)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=frames, chunks=(1, 32, 48), **hdf5plugin.Bitshuffle(cname="lz4"))
    with h5py.File(path) as f:
        d = f["d"]
        kept = [nraw._read_frames_direct(d, range(i, i + 2), "bitshuffle") for i in (0, 2, 4)]
        for _ in range(3):  # chunks read and dropped: their memory is recycled
            nraw._read_frames_direct(d, range(0, 2), "bitshuffle")
        again = nraw._read_frames_direct(d, range(2, 4), "bitshuffle")
    np.testing.assert_array_equal(np.concatenate(kept), frames)
    np.testing.assert_array_equal(again, frames[2:4])
