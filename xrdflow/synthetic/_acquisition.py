"""How a synthetic image is taken: detector, geometry, energy, optics, noise and storage.

:class:`Acquisition` holds these settings (validated when made) and is shared by
:func:`~xrdflow.synthetic.calibrant_image` and :func:`~xrdflow.synthetic.tensile_run`, so a
calibrant and a run of the same experiment use the same one. The helpers below turn it into
pyFAI's pixel arrays and turn expected counts into a stored image.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import options
from ..units import HC_KEV_A

__all__ = ["DEFAULT_GEOMETRY", "Acquisition", "defect_mask"]

#: Default PONI (pyFAI units: metres, radians) relative to the detector centre: distance
#: 1.2 m, PONI 9.7 mm below / 11.8 mm left of the centre (+48.5 / -59 PerkinElmer pixels
#: of 200 um), rot1 = 4 mrad, rot2 = -3 mrad, rot3 = 0. For the PerkinElmer (409.6 mm square)
#: this is poni1 = 0.2145 m, poni2 = 0.1930 m.
DEFAULT_GEOMETRY: dict[str, float] = {
    "dist": 1.2,
    "poni1_from_center": 0.0097,
    "poni2_from_center": -0.0118,
    "rot1": 0.004,
    "rot2": -0.003,
    "rot3": 0.0,
}

DEFAULT_DETECTOR = "Perkin"
DEFAULT_ENERGY_KEV = 87.1
BG_FLOOR = 0.2
BG_DECAY_Q = 30.0  # 1/nm
BACKGROUND_MODEL = f"background * ({BG_FLOOR} + {1 - BG_FLOOR} * exp(-q / {BG_DECAY_Q}))"
DTYPES = ("uint16", "uint32", "int32")
_PONI_KEYS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """Detector, geometry, beam, optics, noise and storage of synthetic images.

    Validated when made (``ValueError`` naming the field); the detector and geometry are
    checked against each other by :meth:`integrator`.

    Attributes
    ----------
    energy_kev
        Photon energy (keV); None: 87.1, or the wavelength of a PONI ``geometry``.
    detector
        pyFAI detector name or instance; None: ``"Perkin"`` (PerkinElmer 2048 x 2048, 200 um).
    geometry
        None (:data:`DEFAULT_GEOMETRY`), a mapping of PONI values (``dist, poni1, poni2,
        rot1, rot2, rot3`` in m and rad), a PONI file path, a pyFAI geometry or an
        ``"as_read"`` :class:`xrdflow.geometry.Geometry`.
    shape
        Image shape; None: the detector's. A smaller shape bins the detector (pyFAI binning)
        so that it keeps its physical size: ``(512, 512)`` is a Perkin at 800 um.
    seed
        Seed of the Poisson noise (and of the defects).
    instrument_sigma_mm
        Radial Gaussian width of a ring on the detector (mm): beam size, sample thickness,
        point spread.
    polarization_factor
        pyFAI polarization factor applied to the image (0.99: horizontally polarized
        synchrotron beam); None for none.
    dtype, saturation
        Stored integer type (uint16, uint32, int32) and saturation level (None: the type's
        maximum).
    defects
        Add :func:`defect_mask` defects (dead pixels read 0, hot pixels saturation).
    band_sigmas
        Rings are evaluated within this many sigma (6: the truncated tail is below 1.6e-8).

    Examples
    --------
    >>> acq = Acquisition(shape=(256, 256), seed=3)
    >>> acq.dtype, acq.saturation_level
    ('uint16', 65535)
    >>> Acquisition(seed=-1)
    Traceback (most recent call last):
    ...
    ValueError: seed: must be an integer >= 0, got -1
    """

    energy_kev: float | None = None
    detector: Any = None
    geometry: Any = None
    shape: tuple[int, int] | None = None
    seed: int = 0
    instrument_sigma_mm: float = 0.2
    polarization_factor: float | None = 0.99
    dtype: str = "uint16"
    saturation: int | None = None
    defects: bool = False
    band_sigmas: float = 6.0

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("seed", options.positive_int(self.seed, "seed", allow_zero=True))
        if self.energy_kev is not None:
            put("energy_kev", options.positive(self.energy_kev, "energy_kev"))
        put("instrument_sigma_mm", options.positive(self.instrument_sigma_mm, "instrument_sigma_mm"))
        put("band_sigmas", options.positive(self.band_sigmas, "band_sigmas"))
        pf = self.polarization_factor
        if pf is not None and not -1 <= options.number(pf, "polarization_factor") <= 1:
            raise ValueError(f"polarization_factor: must be in [-1, 1] or None, got {pf!r}")
        dt = np.dtype(self.dtype)
        options.choice(dt.name, "dtype", DTYPES)
        top = int(np.iinfo(dt).max)
        sat = self.saturation
        if sat is not None:
            if isinstance(sat, bool) or not isinstance(sat, (int, np.integer)) or not 0 < sat <= top:
                raise ValueError(f"saturation: must be an integer in 1..{top} for {dt.name}, got {sat!r}")
            put("saturation", int(sat))
        put("dtype", dt.name)
        put("defects", bool(self.defects))
        if self.shape is not None:
            put("shape", _check_shape(self.shape))

    @property
    def saturation_level(self) -> int:
        """Counts at which a pixel saturates: ``saturation``, or the dtype's maximum."""
        return int(np.iinfo(np.dtype(self.dtype)).max) if self.saturation is None else self.saturation

    def integrator(self):
        """``(pyFAI AzimuthalIntegrator, energy_kev)`` of this acquisition."""
        return resolve_geometry(self.geometry, self.detector, self.shape, self.energy_kev)

    def mask(self, shape) -> np.ndarray | None:
        """:func:`defect_mask` of ``shape`` with this seed, or None without ``defects``."""
        return defect_mask(shape, seed=self.seed) if self.defects else None


ACQUISITION_FIELDS = tuple(f.name for f in dataclasses.fields(Acquisition))


def split_keywords(kwargs: Mapping[str, Any], model_fields, *, function: str):
    """Split keyword arguments into (model keywords, acquisition keywords); TypeError on others."""
    unknown = set(kwargs) - set(model_fields) - set(ACQUISITION_FIELDS)
    if unknown:
        raise TypeError(f"{function}() got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, sorted(unknown)))}")
    return ({k: v for k, v in kwargs.items() if k in model_fields},
            {k: v for k, v in kwargs.items() if k in ACQUISITION_FIELDS})


def build(cls, base, changes: Mapping[str, Any], name: str):
    """``base`` (an instance of the dataclass ``cls``, or None for the defaults) with ``changes``."""
    if base is None:
        return cls(**changes)
    if not isinstance(base, cls):
        raise ValueError(f"{name}: must be a {cls.__name__}, got {type(base).__name__}")
    return dataclasses.replace(base, **changes) if changes else base


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape: must be (rows, columns), got {shape!r}") from None
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape: must be (rows, columns), got {shape!r}")
    return shape


# --------------------------------------------------------------------------- geometry
def _make_detector(detector: Any, shape: tuple[int, int] | None):
    import pyFAI
    from pyFAI.detectors import Detector

    if isinstance(detector, str):
        try:
            det = pyFAI.detector_factory(detector)
        except Exception as exc:  # pyFAI raises RuntimeError / KeyError for unknown names
            raise ValueError(f"detector: unknown pyFAI detector {detector!r} ({exc})") from None
    elif isinstance(detector, Detector):
        det = copy.deepcopy(detector)
    else:
        raise ValueError(f"detector: must be a pyFAI detector name or Detector, got {detector!r}")
    if det.shape is None:
        raise ValueError(f"detector: {detector!r} has no shape")
    if shape is not None and shape != tuple(det.shape):
        full = tuple(int(s) for s in det.max_shape)
        if full[0] % shape[0] or full[1] % shape[1]:
            raise ValueError(
                f"shape {shape} must divide the unbinned detector shape {full} "
                f"(the detector is binned to keep its physical size)")
        det.binning = (full[0] // shape[0], full[1] // shape[1])
        if tuple(det.shape) != shape:
            raise ValueError(f"shape: detector {det.name!r} cannot be binned to {shape}")
    return det


def _geometry_values(geometry: Any):
    """PONI values (or None for the default), and the detector and wavelength it carries."""
    from pyFAI.geometry import Geometry as PyFAIGeometry

    if geometry is None:
        return None, None, None
    if isinstance(geometry, (str, os.PathLike)):
        path = Path(geometry)
        if not path.is_file():
            raise FileNotFoundError(f"geometry: PONI file not found: {path}")
        import pyFAI

        ai0 = pyFAI.load(str(path))
    elif isinstance(geometry, PyFAIGeometry):
        ai0 = geometry
    elif hasattr(geometry, "to_pyfai") and hasattr(geometry, "orientation"):  # xrdflow Geometry
        if geometry.orientation != "as_read":
            raise ValueError("geometry: synthetic images are written as read; use an 'as_read' Geometry")
        ai0 = geometry.to_pyfai()
    elif isinstance(geometry, Mapping):
        allowed = set(_PONI_KEYS)
        unknown = set(geometry) - allowed
        if unknown:
            raise ValueError(f"geometry: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)}, "
                             "in metres and radians as pyFAI)")
        values = {k: float(geometry.get(k, 0.0)) for k in allowed}
        if "dist" not in geometry or values["dist"] <= 0:
            raise ValueError("geometry: 'dist' (metres, > 0) is required")
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"geometry: values must be finite, got {dict(geometry)}")
        return values, None, None
    else:
        raise ValueError("geometry: must be None, a mapping of PONI values, a PONI file path, "
                         f"a pyFAI Geometry or an xrdflow Geometry; got {type(geometry).__name__}")
    return {k: getattr(ai0, k) for k in _PONI_KEYS}, ai0.detector, ai0.wavelength


def resolve_geometry(geometry: Any, detector: Any, shape: Any, energy_kev: float | None):
    """Return ``(pyFAI AzimuthalIntegrator, energy_kev)`` for the arguments (eager validation)."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    values, src_det, src_wl = _geometry_values(geometry)
    if src_det is not None and detector is not None:
        raise ValueError("detector: the geometry already carries a detector; do not pass both")
    if shape is not None:
        shape = _check_shape(shape)
    det = _make_detector(src_det if src_det is not None else (detector or DEFAULT_DETECTOR), shape)
    if energy_kev is None:
        energy_kev = HC_KEV_A / (src_wl * 1e10) if src_wl else DEFAULT_ENERGY_KEV
    elif src_wl and abs(HC_KEV_A / (src_wl * 1e10) - energy_kev) > 1e-6 * energy_kev:
        raise ValueError(f"energy_kev={energy_kev} disagrees with the geometry's wavelength "
                         f"({HC_KEV_A / (src_wl * 1e10):.6f} keV)")
    if values is None:
        size1 = det.shape[0] * det.pixel1
        size2 = det.shape[1] * det.pixel2
        values = {
            "dist": DEFAULT_GEOMETRY["dist"],
            "poni1": size1 / 2 + DEFAULT_GEOMETRY["poni1_from_center"],
            "poni2": size2 / 2 + DEFAULT_GEOMETRY["poni2_from_center"],
            "rot1": DEFAULT_GEOMETRY["rot1"],
            "rot2": DEFAULT_GEOMETRY["rot2"],
            "rot3": DEFAULT_GEOMETRY["rot3"],
        }
    wavelength_m = HC_KEV_A / energy_kev * 1e-10
    return AzimuthalIntegrator(detector=det, wavelength=wavelength_m, **values), float(energy_kev)


def poni_dict(ai) -> dict[str, Any]:
    """JSON-serialisable PONI of ``ai`` (pyFAI config values, shape, beam centre, distance)."""
    cfg = ai.get_config()
    out = {k: float(cfg[k]) for k in _PONI_KEYS + ("wavelength",)}
    out["detector"] = cfg["detector"]
    dc = dict(cfg.get("detector_config") or {})
    out["detector_config"] = {k: (int(v) if k == "orientation" else v) for k, v in dc.items()}
    out["shape"] = [int(s) for s in ai.detector.shape]
    out["units"] = "dist, poni1, poni2, wavelength in m; rot1..3 in rad (pyFAI PONI)"
    f2d = ai.getFit2D()
    out["beam_center_px"] = [float(f2d["centerY"]), float(f2d["centerX"])]
    out["distance_mm"] = float(ai.dist * 1e3)
    return out


def integrator_from_poni(poni: Mapping[str, Any]):
    """pyFAI AzimuthalIntegrator from a :func:`poni_dict`."""
    import pyFAI

    cfg = {k: poni[k] for k in _PONI_KEYS + ("wavelength",)}
    cfg.update(detector=poni["detector"], detector_config=dict(poni["detector_config"]), poni_version=2.1)
    ai = pyFAI.load(cfg)
    if tuple(ai.detector.shape) != tuple(poni["shape"]):
        raise ValueError(f"poni: detector shape {ai.detector.shape} != {poni['shape']}")
    return ai


# --------------------------------------------------------------------------- pixels
class Pixels:
    """Per-geometry pixel arrays, sorted by q for band-limited ring evaluation."""

    def __init__(self, ai, polarization_factor: float | None):
        shape = tuple(ai.detector.shape)
        q = np.asarray(ai.center_array(shape, unit="q_nm^-1"), dtype=np.float64).ravel()
        chi = np.asarray(ai.center_array(shape, unit="chi_rad"), dtype=np.float64).ravel()
        corr = np.asarray(ai.solidAngleArray(shape), dtype=np.float64)
        if polarization_factor is not None:
            corr = corr * np.asarray(ai.polarization(shape, factor=polarization_factor), dtype=np.float64)
        corr = corr.ravel()
        self.shape = shape
        self.order = np.argsort(q, kind="stable").astype(np.intp)
        self.q = q[self.order]
        self.chi = chi[self.order]
        self.corr = corr[self.order]
        self.q_min = float(self.q[0])
        self.q_max = float(self.q[-1])
        self._bg = background_profile(q) * corr  # image order, unit amplitude

    def background(self, amplitude: float) -> np.ndarray:
        """Expected background counts (image order, flat), corrections applied."""
        return amplitude * self._bg

    def band(self, lo: float, hi: float) -> slice:
        """Slice of the q-sorted pixels with ``lo <= q <= hi``."""
        return slice(int(np.searchsorted(self.q, lo, "left")), int(np.searchsorted(self.q, hi, "right")))

    def add_ring(self, lam: np.ndarray, s: slice, q_center, sigma: float, height: float) -> None:
        """Add a Gaussian ring of ``height`` (before corrections) over the band ``s`` to ``lam``."""
        z = (self.q[s] - q_center) / sigma
        lam[self.order[s]] += height * np.exp(-0.5 * z * z) * self.corr[s]


@lru_cache(maxsize=4)
def _pixels_cached(key: str, polarization_factor: float | None) -> Pixels:
    import pyFAI

    return Pixels(pyFAI.load(json.loads(key)), polarization_factor)


def pixels(ai, polarization_factor: float | None) -> Pixels:
    """:class:`Pixels` of ``ai``, cached by its configuration (a few geometries are kept)."""
    cfg = ai.get_config()
    cfg["detector_config"] = {k: (int(v) if k == "orientation" else v)
                              for k, v in (cfg.get("detector_config") or {}).items()}
    pix = _pixels_cached(json.dumps(cfg, sort_keys=True, default=str), polarization_factor)
    if pix.shape != tuple(ai.detector.shape):  # config did not round-trip the binning
        pix = Pixels(ai, polarization_factor)
    return pix


def background_profile(q: np.ndarray) -> np.ndarray:
    """``B(q) / background``: air/amorphous scatter decaying with q (1/nm)."""
    return BG_FLOOR + (1.0 - BG_FLOOR) * np.exp(-q / BG_DECAY_Q)


def instrument_sigma_q(q0: np.ndarray, wavelength_a: float, dist_m: float, sigma_mm: float) -> np.ndarray:
    """sigma in q (1/nm) of a ring whose radial width on a flat detector is sigma_mm."""
    theta = np.arcsin(q0 * wavelength_a / (4 * np.pi * 10.0))
    tth = 2 * theta
    sigma_tth = sigma_mm * 1e-3 * np.cos(tth) ** 2 / dist_m  # rad
    return (2 * np.pi / (wavelength_a / 10.0)) * np.cos(theta) * sigma_tth


# --------------------------------------------------------------------------- defects, noise
def defect_mask(shape: tuple[int, int], *, seed: int = 0, dead_fraction: float = 2e-4,
                n_hot: int = 8) -> np.ndarray:
    """Deterministic detector defects: dead pixels, a dead column, a gap and hot pixels.

    Parameters
    ----------
    shape
        Image shape (rows, columns).
    seed
        Seed of the random dead/hot pixel positions.
    dead_fraction
        Fraction of randomly placed dead pixels.
    n_hot
        Number of hot pixels (stuck at saturation).

    Returns
    -------
    numpy.ndarray
        int8 array: 0 good, 1 dead (reads 0), 2 hot (reads saturation). The dead column is
        at 3/4 of the width, the gap (4 rows, or fewer on tiny images) at 1/3 of the height.

    Examples
    --------
    >>> m = defect_mask((64, 64), seed=1)
    >>> int((m == 1).sum()) >= 64, int((m == 2).sum())
    (True, 8)
    """
    shape = _check_shape(shape)
    if min(shape) < 8:
        raise ValueError(f"shape: must be (rows, columns) with both >= 8, got {shape!r}")
    seed = options.positive_int(seed, "seed", allow_zero=True)
    if not 0 <= options.number(dead_fraction, "dead_fraction") < 0.5:
        raise ValueError(f"dead_fraction: must be in [0, 0.5), got {dead_fraction!r}")
    n_hot = options.positive_int(n_hot, "n_hot", allow_zero=True)
    rng = np.random.default_rng([seed, 0x6D61736B])
    m = np.zeros(shape, np.int8)
    n = shape[0] * shape[1]
    dead = rng.choice(n, size=int(round(dead_fraction * n)), replace=False)
    m.flat[dead] = 1
    m[:, (3 * shape[1]) // 4] = 1
    gap = max(1, min(4, shape[0] // 64))
    r0 = shape[0] // 3
    m[r0:r0 + gap, :] = 1
    good = np.flatnonzero(m.ravel() == 0)
    m.flat[rng.choice(good, size=min(n_hot, good.size), replace=False)] = 2
    return m


def finish(lam: np.ndarray, rng: np.random.Generator, shape, acquisition: Acquisition,
           mask: np.ndarray | None) -> np.ndarray:
    """Poisson counts of the expected counts ``lam``, clipped at saturation, stored as the
    acquisition's dtype, with the defects of ``mask`` (dead read 0, hot saturation)."""
    saturation = acquisition.saturation_level
    counts = rng.poisson(lam)
    np.minimum(counts, saturation, out=counts)
    img = counts.astype(np.dtype(acquisition.dtype)).reshape(shape)
    if mask is not None:
        img[mask == 1] = 0
        img[mask == 2] = saturation
    return img
