"""Inputs of the automatic calibration: the calibrant image, the calibrant's d-spacings
and the pyFAI detector, checked (ValueError / FileNotFoundError naming the argument)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["load_image", "load_calibrant", "dspacing", "make_detector"]


def load_image(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: calibrant image not found")
        import fabio

        return np.asarray(fabio.open(str(path)).data)
    if hasattr(image, "values") and hasattr(image, "dims"):
        image = image.values
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"image: expected a 2D image, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"image: expected a numeric image, got dtype {arr.dtype}")
    return arr


def load_calibrant(calibrant, wavelength_m: float, d_min: float | None):
    from pyFAI.calibrant import Calibrant, get_calibrant

    if isinstance(calibrant, Calibrant):
        d = list(dspacing(calibrant))
        name = getattr(calibrant, "name", None) or "calibrant"
    elif isinstance(calibrant, (str, os.PathLike)) and Path(calibrant).is_file():
        d = list(np.atleast_1d(np.loadtxt(calibrant, usecols=0, comments="#")))
        name = Path(calibrant).stem
    elif isinstance(calibrant, str):
        try:
            cal = get_calibrant(calibrant)
        except Exception:
            raise ValueError(f"calibrant: unknown pyFAI calibrant {calibrant!r}") from None
        d = list(dspacing(cal))
        name = calibrant
    else:
        try:
            d = [float(x) for x in calibrant]
        except TypeError:
            raise ValueError("calibrant: expected a name, a .D file, a Calibrant or d-spacings, "
                             f"got {calibrant!r}") from None
        name = "custom"
    d = sorted({round(float(x), 10) for x in d if x > 0}, reverse=True)
    if d_min is not None:
        d = [x for x in d if x >= d_min]
    lam_a = wavelength_m * 1e10
    d = [x for x in d if x > lam_a / 2]
    if len(d) < 2:
        raise ValueError("calibrant: fewer than 2 reflections left (check d_min and the energy)")
    try:
        cal = Calibrant(dspacing=d, wavelength=wavelength_m)
    except TypeError:  # pyFAI < 2025.07
        cal = Calibrant(dSpacing=d, wavelength=wavelength_m)
    return cal, name, np.asarray(d)


def dspacing(cal):
    return cal.dspacing if hasattr(cal, "dspacing") else cal.dSpacing


def make_detector(detector, shape):
    from pyFAI.detectors import Detector, detector_factory

    if isinstance(detector, Detector):
        det = detector
    elif isinstance(detector, str):
        try:
            det = detector_factory(detector)
        except Exception:
            raise ValueError(f"detector: unknown pyFAI detector {detector!r}") from None
    elif isinstance(detector, dict):
        try:
            det = detector_factory("Detector", {"pixel1": float(detector["pixel1"]),
                                                "pixel2": float(detector["pixel2"]),
                                                "max_shape": list(shape)})
        except KeyError:
            raise ValueError("detector: a dict needs pixel1 and pixel2 (m)") from None
    elif isinstance(detector, (int, float)):
        det = detector_factory("Detector", {"pixel1": float(detector), "pixel2": float(detector),
                                            "max_shape": list(shape)})
    else:
        raise ValueError(f"detector: expected a pyFAI detector name/instance, a dict or a pixel size, got {detector!r}")
    if det.shape is not None and tuple(det.shape) != tuple(shape):
        try:  # a binned image of a named detector
            det.guess_binning(tuple(shape))
        except Exception:
            pass
    if det.shape is not None and tuple(det.shape) != tuple(shape):
        raise ValueError(f"detector: shape {tuple(det.max_shape)} does not match the image shape {tuple(shape)}")
    return det
