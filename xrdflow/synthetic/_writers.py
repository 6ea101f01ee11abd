"""Synthetic data written as a beamline writes it: numbered TIFFs, a CSV log, PONI, truth.

Every file is written under a temporary name and renamed into place
(:func:`xrdflow.nexus.atomic_output`), so a file under its final name is always complete.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import options
from ._acquisition import ACQUISITION_FIELDS, defect_mask
from ._calibrant import calibrant_image
from ._tensile import tensile_run

__all__ = ["write_calibrant", "write_tensile_run", "write_demo"]

_LOG_COLUMNS = ("frame", "applied_strain", "load_N", "time_s")


def _atomic(path: Path):
    from ..nexus import atomic_output

    return atomic_output(path, lock=False)


def _write_tif(path: Path, data: np.ndarray) -> None:
    import fabio.tifimage

    with _atomic(path) as tmp:
        fabio.tifimage.TifImage(data=data).write(str(tmp))


def _write_json(path: Path, obj: Any) -> None:
    with _atomic(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, allow_nan=True)


def _write_poni(path: Path, ai) -> None:
    with _atomic(path) as tmp:
        if tmp.exists():  # pyFAI appends to an existing PONI file
            tmp.unlink()
        ai.save(str(tmp))


def _write_log(path: Path, log: dict[str, np.ndarray]) -> None:
    with _atomic(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(_LOG_COLUMNS))
        for row in zip(*(log[c] for c in _LOG_COLUMNS)):
            w.writerow([int(row[0]), repr(float(row[1])), repr(float(row[2])), repr(float(row[3]))])


def _prepare_folder(folder: Any, name: str) -> Path:
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{name}: must be a path, got {folder!r}")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "/\\"):
        raise ValueError(f"prefix: must be a non-empty file name prefix, got {prefix!r}")
    return prefix


def write_calibrant(folder: str | os.PathLike, *, prefix: str = "LaB6", **kwargs: Any) -> dict[str, Path]:
    """Write a synthetic calibrant image as a beamline does, with its PONI and truth.

    Files: ``<prefix>_00001.tif`` (fabio TIFF), ``<prefix>.poni`` (the true geometry,
    written by pyFAI), ``<prefix>_truth.json`` (:class:`CalibrantImage`) and, with
    ``defects=True``, ``<prefix>_mask.tif`` (uint8, 1 = dead, 2 = hot).

    Parameters
    ----------
    folder
        Output folder (created).
    prefix
        File name prefix.
    **kwargs
        Passed to :func:`calibrant_image` (``model``, ``acquisition`` or their fields).

    Returns
    -------
    dict
        ``{"image", "poni", "truth"[, "mask"]}`` -> path.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_calibrant(tempfile.mkdtemp(), shape=(256, 256))
    >>> sorted(paths)
    ['image', 'poni', 'truth']
    """
    prefix = _check_prefix(prefix)
    img, truth = calibrant_image(**kwargs)
    out = _prepare_folder(folder, "folder")
    paths = {"image": out / f"{prefix}_00001.tif", "poni": out / f"{prefix}.poni",
             "truth": out / f"{prefix}_truth.json"}
    _write_tif(paths["image"], img)
    _write_poni(paths["poni"], truth.integrator())
    if truth["defects"]:
        paths["mask"] = out / f"{prefix}_mask.tif"
        _write_tif(paths["mask"], defect_mask(img.shape, seed=truth["seed"]).astype(np.uint8))
    _write_json(paths["truth"], dict(truth, files={k: p.name for k, p in paths.items()}))
    return paths


def write_tensile_run(folder: str | os.PathLike, n_frames: int | None = None, *, prefix: str = "mg",
                      digits: int = 5, progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write a synthetic tensile run as a beamline does: numbered TIFFs, a CSV log, truth.

    Files: ``<prefix>_00001.tif`` ... (zero-padded, numbered from ``first_frame``),
    ``<prefix>_log.csv`` (columns ``frame, applied_strain, load_N, time_s``),
    ``<prefix>_truth.json`` (:meth:`TensileRun.truth` plus file names), ``<prefix>.poni``
    (true geometry, written by pyFAI) and, with ``defects=True``, ``<prefix>_mask.tif``.
    Frames are made one at a time (flat memory).

    Parameters
    ----------
    folder
        Output folder (created).
    n_frames
        Number of frames (see :func:`tensile_run`; default 60).
    prefix
        File name prefix.
    digits
        Zero padding of the frame numbers.
    progress
        Show a tqdm progress bar.
    **kwargs
        Passed to :func:`tensile_run` (``model``, ``acquisition`` or their fields).

    Returns
    -------
    dict
        ``{"frames": [paths], "log", "truth", "poni"[, "mask"]}``.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_tensile_run(tempfile.mkdtemp(), 2, shape=(256, 256))
    >>> [p.name for p in paths["frames"]], paths["log"].name
    (['mg_00001.tif', 'mg_00002.tif'], 'mg_log.csv')
    """
    prefix = _check_prefix(prefix)
    if options.positive_int(digits, "digits") > 12:
        raise ValueError(f"digits: must be an integer in 1..12, got {digits!r}")
    run = tensile_run(n_frames, **kwargs)
    last = int(run.frame_numbers[-1])
    if len(str(last)) > digits:
        raise ValueError(f"digits={digits} is too few for frame number {last}")
    out = _prepare_folder(folder, "folder")
    frames = [out / f"{prefix}_{int(n):0{digits}d}.tif" for n in run.frame_numbers]
    it = range(len(run))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthetic frames", unit="frame")
    for k in it:
        _write_tif(frames[k], run.frame(k))
    paths: dict[str, Any] = {"frames": frames, "log": out / f"{prefix}_log.csv",
                             "truth": out / f"{prefix}_truth.json", "poni": out / f"{prefix}.poni"}
    _write_log(paths["log"], run.log)
    _write_poni(paths["poni"], run.integrator())
    if run.mask is not None:
        paths["mask"] = out / f"{prefix}_mask.tif"
        _write_tif(paths["mask"], run.mask.astype(np.uint8))
    truth = run.truth()
    truth["files"] = {"frames": [p.name for p in frames],
                      **{k: p.name for k, p in paths.items() if k != "frames"}}
    _write_json(paths["truth"], truth)
    return paths


def write_demo(folder: str | os.PathLike, *, n_frames: int | None = None, seed: int | None = None,
               shape=None, progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write a complete demo input folder: a LaB6 calibrant and a Mg tensile run.

    Layout: ``<folder>/calibrant/LaB6_00001.tif, LaB6.poni, LaB6_truth.json`` and
    ``<folder>/tensile/mg_00001.tif ... mg_log.csv, mg_truth.json, mg.poni``, with the same
    acquisition (87.1 keV, PerkinElmer, :data:`DEFAULT_GEOMETRY` by default).

    Parameters
    ----------
    folder
        Output folder (created).
    n_frames, seed, shape, progress
        See :func:`write_tensile_run` (default 60 frames, seed 0, the detector's shape).
    **kwargs
        ``acquisition`` and the :class:`Acquisition` fields (``energy_kev``, ``detector``,
        ``geometry``, ``polarization_factor``, ``instrument_sigma_mm``, ``dtype``,
        ``saturation``, ``defects``, ``band_sigmas``) are shared by both; the other keys
        (``model``, :class:`TensileModel` fields) go to the run only.

    Returns
    -------
    dict
        ``{"calibrant": write_calibrant(...), "tensile": write_tensile_run(...)}``.

    Examples
    --------
    >>> import tempfile
    >>> out = write_demo(tempfile.mkdtemp(), n_frames=2, shape=(256, 256))
    >>> out["calibrant"]["image"].name, len(out["tensile"]["frames"])
    ('LaB6_00001.tif', 2)
    """
    kwargs.update({k: v for k, v in (("seed", seed), ("shape", shape)) if v is not None})
    shared = {k: kwargs[k] for k in ACQUISITION_FIELDS + ("acquisition",) if k in kwargs}
    out = _prepare_folder(folder, "folder")
    tensile = write_tensile_run(out / "tensile", n_frames, progress=progress, **kwargs)
    calibrant = write_calibrant(out / "calibrant", **shared)
    return {"calibrant": calibrant, "tensile": tensile}
