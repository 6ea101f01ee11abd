"""Synthetic in-situ tensile test: the sample and loading model, and :func:`tensile_run`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import options
from ._acquisition import Acquisition, build, pixels, split_keywords
from ._run import TensileRun

__all__ = ["MG_LOAD_SHARING", "TensileModel", "tensile_run"]

#: Default post-yield load-sharing factors of Mg grain families (multiplying hardening_ratio).
MG_LOAD_SHARING: dict[str, float] = {"10-10": 0.6, "0002": 1.5, "10-11": 1.0}


@dataclasses.dataclass(frozen=True)
class TensileModel:
    """The sample and its loading: phase, strain schedule, lattice strains, widths, log.

    Validated when made (``ValueError`` naming the field). See the module
    :mod:`xrdflow.synthetic` for the strain model.

    Attributes
    ----------
    n_frames
        Number of frames (ignored when ``applied_strain`` is given: its length).
    phase
        Phase for :func:`xrdflow.crystal.reflections` (default hcp Mg, a = 3.2094, c = 5.2108 A).
    max_strain
        Final applied engineering strain of the default linear ramp from 0.
    applied_strain
        Explicit applied-strain schedule (1D, >= 0), overriding ``n_frames``/``max_strain``.
    yield_strain
        Applied strain at yield (Mg alloys: ~0.3-0.5 %).
    poisson_ratio
        Ratio -eps_transverse/eps_axial of the lattice strains. Bulk Mg's elastic value is
        about 0.29; the default 0.35 is the project's reference value; set 0.29 for bulk Mg.
    hardening_ratio
        Post-yield slope of the macroscopic stress-strain curve relative to Young's modulus,
        and the mean post-yield slope of the axial lattice strain.
    load_sharing
        Post-yield lattice-strain slope factor per hkl label (``"10-10"``...), multiplying
        ``hardening_ratio``; unlisted reflections use 1.0. Default :data:`MG_LOAD_SHARING`
        for Mg, else all 1.0.
    broadening
        Microstrain per unit plastic strain: sigma grows as q0 * broadening * (e - yield_strain).
    load_azimuth_deg
        Azimuth (pyFAI chi, degrees) of the load axis on the detector; 0 = horizontal (+x).
    youngs_modulus_gpa, cross_section_mm2
        For the logged load (N) of the bilinear stress-strain curve.
    frame_period_s
        Time between frames (s) in the log.
    first_frame
        Number of the first frame (file numbers, log ``frame`` column).
    ring_counts, background
        Peak height of the strongest ring at zero strain and background at q -> 0 (counts).
    min_intensity
        Reflections weaker than this (relative, strongest = 100) are left out.
    truth_azimuths_deg
        Azimuths (pyFAI chi, deg) sampled in the truth; default -180, -170, ..., 170.

    Examples
    --------
    >>> m = TensileModel(applied_strain=[0.0, 0.01])
    >>> m.strain_schedule().tolist(), m.load_sharing_factors()["0002"]
    ([0.0, 0.01], 1.5)
    >>> TensileModel(poisson_ratio=0.7)
    Traceback (most recent call last):
    ...
    ValueError: poisson_ratio: must be in [0, 0.5], got 0.7
    """

    n_frames: int = 60
    phase: Any = "Mg"
    max_strain: float = 0.10
    applied_strain: Any = None
    yield_strain: float = 0.004
    poisson_ratio: float = 0.35
    hardening_ratio: float = 0.02
    load_sharing: Mapping[str, float] | None = None
    broadening: float = 0.03
    load_azimuth_deg: float = 0.0
    youngs_modulus_gpa: float = 45.0
    cross_section_mm2: float = 4.0
    frame_period_s: float = 2.0
    first_frame: int = 1
    ring_counts: float = 8000.0
    background: float = 300.0
    min_intensity: float = 0.5
    truth_azimuths_deg: Any = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        self._check_schedule(put)
        put("yield_strain", options.positive(self.yield_strain, "yield_strain"))
        put("poisson_ratio", options.number(self.poisson_ratio, "poisson_ratio"))
        if not 0 <= self.poisson_ratio <= 0.5:
            raise ValueError(f"poisson_ratio: must be in [0, 0.5], got {self.poisson_ratio!r}")
        put("hardening_ratio", options.positive(self.hardening_ratio, "hardening_ratio", allow_zero=True))
        if self.hardening_ratio >= 1:
            raise ValueError(f"hardening_ratio: must be < 1, got {self.hardening_ratio!r}")
        put("broadening", options.positive(self.broadening, "broadening", allow_zero=True))
        put("load_azimuth_deg", options.number(self.load_azimuth_deg, "load_azimuth_deg"))
        for name in ("youngs_modulus_gpa", "cross_section_mm2", "frame_period_s", "ring_counts"):
            put(name, options.positive(getattr(self, name), name))
        put("first_frame", options.positive_int(self.first_frame, "first_frame", allow_zero=True))
        put("background", options.positive(self.background, "background", allow_zero=True))
        put("min_intensity", options.positive(self.min_intensity, "min_intensity", allow_zero=True))
        ls = self.load_sharing
        if ls is not None:
            if not isinstance(ls, Mapping) or not all(
                    isinstance(k, str) and math.isfinite(float(v)) and float(v) >= 0 for k, v in ls.items()):
                raise ValueError(f"load_sharing: must map hkl labels to non-negative factors, got {ls!r}")
            put("load_sharing", dict(ls))
        if self.truth_azimuths_deg is not None:
            az = np.atleast_1d(np.asarray(self.truth_azimuths_deg, dtype=float))
            if az.ndim != 1 or not np.all(np.isfinite(az)):
                raise ValueError("truth_azimuths_deg: must be a 1D array of finite azimuths (deg)")
            put("truth_azimuths_deg", tuple(az.tolist()))

    def _check_schedule(self, put) -> None:
        if self.applied_strain is None:
            put("n_frames", options.positive_int(self.n_frames, "n_frames"))
            put("max_strain", options.positive(self.max_strain, "max_strain", allow_zero=True))
            if self.max_strain >= 1:
                raise ValueError(f"max_strain: must be < 1 (engineering strain), got {self.max_strain!r}")
            return
        strain = np.asarray(self.applied_strain, dtype=float)
        if strain.ndim != 1 or strain.size < 1 or not np.all(np.isfinite(strain)) or np.any(strain < 0) \
                or np.any(strain >= 1):
            raise ValueError("applied_strain: must be a non-empty 1D array of strains in [0, 1)")
        put("applied_strain", tuple(strain.tolist()))

    def strain_schedule(self) -> np.ndarray:
        """Applied engineering strain per frame."""
        if self.applied_strain is None:
            return np.linspace(0.0, self.max_strain, int(self.n_frames))
        return np.asarray(self.applied_strain, dtype=float)

    def load_sharing_factors(self) -> dict[str, float]:
        """Load-sharing factor per hkl label (an ``"Mg 10-10"`` key counts as ``"10-10"``)."""
        ls = self.load_sharing
        if ls is None:
            ls = MG_LOAD_SHARING if self.phase == "Mg" else {}
        return {str(k).split(" ")[-1]: float(v) for k, v in ls.items()}

    def azimuths_deg(self) -> np.ndarray:
        """Azimuths (pyFAI chi, deg) sampled in the truth."""
        if self.truth_azimuths_deg is None:
            return np.arange(-180.0, 180.0, 10.0)
        return np.asarray(self.truth_azimuths_deg, dtype=float)


_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(TensileModel))


def tensile_run(n_frames: int | None = None, *, model: TensileModel | None = None,
                acquisition: Acquisition | None = None, **kwargs: Any) -> TensileRun:
    """A lazy synthetic in-situ tensile test (frames made on demand) with exact truth.

    Parameters
    ----------
    n_frames
        Number of frames (default 60; ignored when ``applied_strain`` is given: its length).
    model
        :class:`TensileModel`: phase, strain schedule, lattice-strain and width model, log
        (default hcp Mg, a linear ramp to 10 % in 60 frames).
    acquisition
        :class:`~xrdflow.synthetic.Acquisition`: detector, geometry, energy, shape, seed,
        optics, noise, storage (default 87.1 keV, Perkin, :data:`DEFAULT_GEOMETRY`); the same
        as for :func:`~xrdflow.synthetic.calibrant_image`. Frame ``k`` draws its noise from
        ``numpy.random.default_rng([seed, frame_number])``.
    **kwargs
        Any field of either, overriding it (the keywords of xrdflow 0.1): ``phase``,
        ``max_strain``, ``applied_strain``, ``yield_strain``, ``poisson_ratio``,
        ``hardening_ratio``, ``load_sharing``, ``broadening``, ``load_azimuth_deg``,
        ``youngs_modulus_gpa``, ``cross_section_mm2``, ``frame_period_s``, ``first_frame``,
        ``ring_counts`` (8000), ``background`` (300), ``min_intensity``,
        ``truth_azimuths_deg``; ``energy_kev``, ``detector``, ``geometry``, ``shape``,
        ``seed``, ``instrument_sigma_mm``, ``polarization_factor``, ``dtype``,
        ``saturation``, ``defects``, ``band_sigmas``.

    Returns
    -------
    TensileRun
        Lazy run: ``len(run)``, ``run.frame(k)``, ``iter(run)``, ``run.log``, ``run.truth()``.

    Examples
    --------
    >>> run = tensile_run(4, shape=(256, 256), seed=3)
    >>> img = run.frame(0)
    >>> img.shape, img.dtype.name, len(run)
    ((256, 256), 'uint16', 4)
    >>> [round(float(q), 1) for q in run.q0[:3]]  # Mg 10-10, 0002, 10-11
    [22.6, 24.1, 25.6]
    >>> sorted(run.log)
    ['applied_strain', 'frame', 'load_N', 'time_s']
    """
    from ..crystal import reflections

    if n_frames is not None:
        kwargs["n_frames"] = n_frames
    model_kw, acq_kw = split_keywords(kwargs, _MODEL_FIELDS, function="tensile_run")
    model = build(TensileModel, model, model_kw, "model")
    acq = build(Acquisition, acquisition, acq_kw, "acquisition")
    ai, energy = acq.integrator()
    pix = pixels(ai, acq.polarization_factor)
    refl = reflections(model.phase, energy_kev=energy, q_range=(0.0, pix.q_max + 1.0))
    refl = refl.isel(reflection=np.flatnonzero(refl.intensity.values >= model.min_intensity))
    if refl.sizes["reflection"] == 0:
        raise ValueError(f"phase {model.phase!r}: no reflection on the detector above "
                         f"min_intensity={model.min_intensity}")
    return TensileRun(ai=ai, energy_kev=energy, reflections=refl, model=model, acquisition=acq, pixels=pix)
