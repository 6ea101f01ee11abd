"""Diffraction geometry: PONI values + detector + image orientation, frozen and hashable.

A :class:`Geometry` is a handful of floats and strings. It is what travels in a dask graph
(never a pyFAI integrator): each worker thread builds its own
:class:`pyFAI.integrator.azimuthal.AzimuthalIntegrator` from it once, through
:func:`xrdflow.engines.pyfai.cached_integrator`, and reuses it for every frame.

Image orientation is explicit. pyFAI PONI files apply to the image as fabio reads it
(``orientation="as_read"``); Dioptas PONI files apply to the image flipped up-down
(``orientation="flipud"``). PONI files written by xrdflow record the orientation in a
comment line (``# xrdflow_orientation: flipud``) that pyFAI's own reader ignores, so the
file stays a valid pyFAI PONI file.

Units: q in 1/nm, d in Angstrom, 2theta in degrees, energy in keV, wavelength in Angstrom
for the helper functions (``wavelength_a``); the Geometry fields themselves are pyFAI's SI
values (metres, radians).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any


from .units import (  # noqa: F401  re-exported: the conversions belong with the geometry too
    HC_KEV_A,
    d_to_q,
    d_to_two_theta,
    energy_to_wavelength,
    q_to_d,
    q_to_two_theta,
    two_theta_to_d,
    two_theta_to_q,
    wavelength_to_energy,
)

__all__ = [
    "Geometry",
    "HC_KEV_A",
    "energy_to_wavelength",
    "wavelength_to_energy",
    "q_to_d",
    "d_to_q",
    "two_theta_to_q",
    "q_to_two_theta",
    "d_to_two_theta",
    "two_theta_to_d",
]

#: h*c in keV * Angstrom (CODATA 2018)

ORIENTATIONS = ("as_read", "flipud")
_ORIENTATION_RE = re.compile(r"^#\s*xrdflow_orientation\s*:\s*(\S+)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------- Geometry
@dataclasses.dataclass(frozen=True, kw_only=True)
class Geometry:
    """Frozen diffraction geometry: pyFAI PONI values, detector and image orientation.

    Parameters
    ----------
    dist, poni1, poni2
        Sample-to-PONI distance and the point of normal incidence on the detector
        (slow axis ``poni1``, fast axis ``poni2``), in metres, as in pyFAI.
    rot1, rot2, rot3
        Detector rotations in radians (pyFAI convention).
    wavelength
        X-ray wavelength in metres (pyFAI convention). See :attr:`energy_kev`.
    detector
        pyFAI detector class name (``"Pilatus1M"``, ``"Perkin"``...) or ``"Detector"``
        for a generic detector described by ``pixel1``, ``pixel2`` and ``max_shape``.
    pixel1, pixel2
        Pixel size (m) along the slow (rows) and fast (columns) axes. Filled from the
        detector when omitted for a named detector.
    max_shape
        Detector shape (rows, columns) or None when unknown.
    orientation
        ``"as_read"`` when the geometry applies to the image as fabio reads it (pyFAI
        PONI files), ``"flipud"`` when it applies to the image flipped up-down (Dioptas
        PONI files). :func:`xrdflow.integrate` flips frames and masks accordingly.
    detector_config
        Extra pyFAI detector configuration as a JSON string (kept so that a round trip
        through pyFAI is lossless); empty for the defaults.

    Examples
    --------
    >>> g = Geometry(dist=0.2, poni1=0.09, poni2=0.08, wavelength=4.066e-11,
    ...              detector="Pilatus1M")
    >>> round(g.energy_kev, 3), g.pixel1, g.max_shape
    (30.493, 0.000172, (1043, 981))
    >>> g == Geometry.from_pyfai(g.to_pyfai())
    True
    """

    dist: float
    poni1: float
    poni2: float
    rot1: float = 0.0
    rot2: float = 0.0
    rot3: float = 0.0
    wavelength: float
    detector: str = "Detector"
    pixel1: float | None = None
    pixel2: float | None = None
    max_shape: tuple[int, int] | None = None
    orientation: str = "as_read"
    detector_config: str = ""

    def __post_init__(self) -> None:
        for name in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Geometry.{name} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"Geometry.{name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if self.dist <= 0:
            raise ValueError(f"Geometry.dist must be > 0 m, got {self.dist}")
        if not (1e-13 < self.wavelength < 1e-8):
            raise ValueError(
                f"Geometry.wavelength must be in metres (1e-13..1e-8), got {self.wavelength}"
            )
        if self.orientation not in ORIENTATIONS:
            raise ValueError(
                f"Geometry.orientation must be one of {ORIENTATIONS}, got {self.orientation!r}"
            )
        if not isinstance(self.detector, str) or not self.detector:
            raise ValueError(f"Geometry.detector must be a pyFAI detector name, got {self.detector!r}")
        if self.max_shape is not None:
            shape = tuple(int(s) for s in self.max_shape)
            if len(shape) != 2 or min(shape) <= 0:
                raise ValueError(f"Geometry.max_shape must be (rows, columns), got {self.max_shape}")
            object.__setattr__(self, "max_shape", shape)
        # fill pixel size / shape from a named detector
        if self.pixel1 is None or self.pixel2 is None or (
            self.max_shape is None and self.detector != "Detector"
        ):
            det = self._build_detector(fill=False)
            if self.pixel1 is None:
                object.__setattr__(self, "pixel1", float(det.pixel1))
            if self.pixel2 is None:
                object.__setattr__(self, "pixel2", float(det.pixel2))
            if self.max_shape is None and det.shape is not None:
                object.__setattr__(self, "max_shape", tuple(int(s) for s in det.shape))
        for name in ("pixel1", "pixel2"):
            value = getattr(self, name)
            if value is None or not (0 < float(value) < 0.1):
                raise ValueError(f"Geometry.{name} must be a pixel size in metres, got {value}")
            object.__setattr__(self, name, float(value))

    # ------------------------------------------------------------------ detector
    def _build_detector(self, fill: bool = True):
        from pyFAI.detectors import detector_factory

        config: dict[str, Any] = json.loads(self.detector_config) if self.detector_config else {}
        if fill and (self.detector == "Detector" or "pixel1" in config):
            config["pixel1"] = self.pixel1
            config["pixel2"] = self.pixel2
            config["max_shape"] = list(self.max_shape) if self.max_shape else None
        elif self.detector == "Detector" and not fill:
            config.setdefault("pixel1", self.pixel1 if self.pixel1 else 1e-4)
            config.setdefault("pixel2", self.pixel2 if self.pixel2 else 1e-4)
        try:
            det = detector_factory(self.detector, config or None)
        except Exception as exc:  # pyFAI raises RuntimeError/KeyError for unknown names
            raise ValueError(f"Geometry.detector: unknown pyFAI detector {self.detector!r} ({exc})") from None
        if fill and self.max_shape is not None and det.shape is not None and tuple(det.shape) != self.max_shape:
            try:  # binned images of a named detector
                det.guess_binning(self.max_shape)
            except Exception:
                pass
        return det

    # ------------------------------------------------------------------ conversions
    @property
    def wavelength_a(self) -> float:
        """Wavelength in Angstrom."""
        return self.wavelength * 1e10

    @property
    def energy_kev(self) -> float:
        """Photon energy in keV."""
        return HC_KEV_A / self.wavelength_a

    @property
    def poni_px(self) -> tuple[float, float]:
        """The PONI in pixels (row, column) on the image in this geometry's orientation."""
        return self.poni1 / self.pixel1, self.poni2 / self.pixel2

    @property
    def fit2d(self) -> dict[str, float]:
        """Fit2D-style values: directDist (mm), centerX, centerY (px), tilt, tiltPlanRotation (deg)."""
        return dict(self.to_pyfai().getFit2D())

    @property
    def beam_center_px(self) -> tuple[float, float]:
        """Where the direct beam hits the detector, as (x, y) = (column, row) in pixels.

        Pixel coordinates are those of the image in this geometry's orientation (for
        ``"flipud"``: the flipped image), centre of the first pixel at (0.5, 0.5) as in
        pyFAI/Fit2D.
        """
        f2d = self.fit2d
        return float(f2d["centerX"]), float(f2d["centerY"])

    @property
    def distance_mm(self) -> float:
        """Sample-to-PONI distance in mm."""
        return self.dist * 1e3

    def replace(self, **changes: Any) -> "Geometry":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-serialisable)."""
        out = dataclasses.asdict(self)
        out["max_shape"] = list(self.max_shape) if self.max_shape else None
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Geometry":
        """Inverse of :meth:`as_dict`."""
        values = dict(values)
        if values.get("max_shape") is not None:
            values["max_shape"] = tuple(values["max_shape"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"Geometry.from_dict: unknown fields {sorted(unknown)}")
        return cls(**values)

    # ------------------------------------------------------------------ pyFAI
    @classmethod
    def from_pyfai(cls, ai, *, orientation: str = "as_read") -> "Geometry":
        """Geometry of a pyFAI geometry/integrator (any object with the PONI attributes)."""
        det = ai.detector
        if ai.wavelength is None:
            raise ValueError("ai: the pyFAI geometry has no wavelength")
        config = det.get_config() if hasattr(det, "get_config") else {}
        config = {k: (int(v) if k == "orientation" else v) for k, v in config.items()}
        for key in ("pixel1", "pixel2", "max_shape"):
            config.pop(key, None)
        name = det.__class__.__name__
        if name == "Detector":
            config.pop("orientation", None) if config.get("orientation") == 3 else None
        extra = json.dumps(config, sort_keys=True) if config else ""
        default = {}
        if name != "Detector":
            try:
                from pyFAI.detectors import detector_factory

                default = detector_factory(name).get_config()
                default = {k: (int(v) if k == "orientation" else v) for k, v in default.items()}
                for key in ("pixel1", "pixel2", "max_shape"):
                    default.pop(key, None)
            except Exception:
                default = {}
        if config == default:
            extra = ""
        return cls(
            dist=ai.dist,
            poni1=ai.poni1,
            poni2=ai.poni2,
            rot1=ai.rot1,
            rot2=ai.rot2,
            rot3=ai.rot3,
            wavelength=ai.wavelength,
            detector=name,
            pixel1=det.pixel1,
            pixel2=det.pixel2,
            max_shape=tuple(int(s) for s in det.shape) if det.shape is not None else None,
            orientation=orientation,
            detector_config=extra,
        )

    def to_pyfai(self):
        """A new :class:`~pyFAI.integrator.azimuthal.AzimuthalIntegrator` (not cached).

        Use :func:`xrdflow.engines.pyfai.cached_integrator` to share one per thread.
        """
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        return AzimuthalIntegrator(
            dist=self.dist,
            poni1=self.poni1,
            poni2=self.poni2,
            rot1=self.rot1,
            rot2=self.rot2,
            rot3=self.rot3,
            wavelength=self.wavelength,
            detector=self._build_detector(),
        )

    # ------------------------------------------------------------------ PONI files
    @classmethod
    def from_poni(cls, path: str | os.PathLike, *, orientation: str | None = None) -> "Geometry":
        """Read a pyFAI PONI file (versions 1, 2, 2.1).

        Parameters
        ----------
        path
            PONI file.
        orientation
            ``"as_read"`` (pyFAI PONI files) or ``"flipud"`` (Dioptas PONI files). When
            None, the ``# xrdflow_orientation:`` line written by :meth:`to_poni` is used if
            present, else ``"as_read"``. Passing a value that contradicts that line
            raises ValueError.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.poni"
        >>> g = Geometry(dist=1.2, poni1=0.2, poni2=0.21, rot1=0.001, wavelength=1.393e-11,
        ...              detector="Detector", pixel1=296e-6, pixel2=296e-6,
        ...              orientation="flipud")
        >>> g.to_poni(p)
        >>> Geometry.from_poni(p) == g
        True
        """
        from pyFAI.io.ponifile import PoniFile

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: PONI file not found")
        if orientation is not None and orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
        recorded = None
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                match = _ORIENTATION_RE.match(line.strip())
                if match:
                    recorded = match.group(1).lower()
        if recorded is not None and recorded not in ORIENTATIONS:
            raise ValueError(f"{path}: unknown xrdflow_orientation {recorded!r}")
        if orientation is not None and recorded is not None and orientation != recorded:
            raise ValueError(
                f"{path}: the file says xrdflow_orientation={recorded} but orientation="
                f"{orientation!r} was requested"
            )
        try:
            poni = PoniFile(str(path))
        except Exception as exc:
            raise ValueError(f"{path}: not a readable PONI file ({exc})") from None
        for name in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3"):
            if getattr(poni, name) is None:
                raise ValueError(f"{path}: PONI file has no {name}")
        if poni.wavelength is None:
            raise ValueError(f"{path}: PONI file has no Wavelength")
        return cls.from_pyfai(poni, orientation=orientation or recorded or "as_read")

    def to_poni(self, path: str | os.PathLike, *, version: float = 2.1, extra: dict | None = None) -> None:
        """Write a pyFAI PONI file (``version`` 1, 2 or 2.1) readable by pyFAI itself.

        The orientation is recorded as a comment line ``# xrdflow_orientation: ...``, which
        pyFAI ignores and :meth:`from_poni` reads back. ``extra`` entries (e.g.
        ``{"Calibrant": "CeO2"}``) are written as ``# key: value`` comments.
        """
        from pyFAI.io.ponifile import PoniFile

        from .nexus import atomic_output

        if version not in (1, 2, 2.1):
            raise ValueError(f"version must be 1, 2 or 2.1, got {version}")
        poni = PoniFile(self.to_pyfai())
        poni.API_VERSION = version
        if extra:
            poni.extra.update({str(k): str(v) for k, v in extra.items()})
        import io

        buf = io.StringIO()
        poni.write(buf)
        text = buf.getvalue()
        if version == 1:
            # pyFAI writes the pixel size only for detectors without fixed pixels
            if "pixelsize1" not in text.lower() and self.detector == "Detector":
                text += f"PixelSize1: {self.pixel1}\nPixelSize2: {self.pixel2}\n"
        text += f"# xrdflow_orientation: {self.orientation}\n"
        with atomic_output(path, lock=False) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
