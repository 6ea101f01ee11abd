"""Synthetic in-situ tensile test: the sample and loading model, and :func:`tensile_run`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import options
from ..profiles import SHAPES
from ._acquisition import Acquisition, build, pixels, split_keywords
from ._run import TensileRun, phase_names

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
    peak_shape, eta, m, asymmetry
        Radial ring profile (``peak_shape``, not ``shape``: that keyword of
        :func:`tensile_run` is the image shape of the :class:`Acquisition`): one of :data:`xrdflow.profiles.SHAPES` (default ``"gaussian"``,
        the image of xrdflow 0.1 bit for bit) with FWHM ``2 sqrt(2 ln 2) sigma`` and the
        shape parameters of :func:`xrdflow.profiles.profile`: ``eta`` in [0, 1] (pseudo-Voigt
        Lorentzian fraction), ``m > 0.5`` (Pearson VII exponent), ``|asymmetry| < 1``
        (split pseudo-Voigt; > 0 is a tail towards larger q). Parameters a shape does not
        use are recorded but ignored.
    second_phase
        None (one phase), or a second phase for :func:`xrdflow.crystal.reflections` (a
        built-in name such as ``"Fe-fcc"`` or a pymatgen Structure) whose rings are added:
        a two-phase run (e.g. ``phase="Fe-bcc", second_phase="Fe-fcc"``: the ferrite 110 and
        austenite 111 rings overlap, 0.69 1/nm apart).
    second_phase_fraction
        ``(f0, f1)``: volume fraction of the second phase at zero applied strain and at the
        largest applied strain of the schedule, linear in applied strain in between (a
        fading phase, e.g. austenite transforming under load: ``(0.5, 0.05)``); the first
        phase has ``1 - f``. Ignored without ``second_phase``.
    second_phase_load_sharing
        Post-yield load-sharing factor of all second-phase reflections (replacing
        ``load_sharing`` for them), so that the two phases strain differently under load
        and the separation of their rings changes.

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
    peak_shape: str = "gaussian"
    eta: float = 0.5
    m: float = 2.0
    asymmetry: float = 0.0
    second_phase: Any = None
    second_phase_fraction: Any = (0.5, 0.05)
    second_phase_load_sharing: float = 2.5

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
        self._check_profile(put)
        self._check_second_phase(put)

    def _check_profile(self, put) -> None:
        if not isinstance(self.peak_shape, str) or self.peak_shape not in SHAPES:
            raise ValueError(f"peak_shape: must be one of {SHAPES}, got {self.peak_shape!r}")
        put("eta", options.number(self.eta, "eta"))
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta: must be in [0, 1], got {self.eta!r}")
        put("m", options.number(self.m, "m"))
        if not self.m > 0.5:
            raise ValueError(f"m: must be > 0.5 (Pearson VII exponent), got {self.m!r}")
        put("asymmetry", options.number(self.asymmetry, "asymmetry"))
        if not abs(self.asymmetry) < 1:
            raise ValueError(f"asymmetry: must be in (-1, 1), got {self.asymmetry!r}")

    def _check_second_phase(self, put) -> None:
        try:
            f = tuple(float(v) for v in self.second_phase_fraction)
        except (TypeError, ValueError):
            f = ()
        if len(f) != 2 or not all(math.isfinite(v) and 0 <= v <= 1 for v in f):
            raise ValueError("second_phase_fraction: must be (f0, f1), volume fractions in [0, 1], "
                             f"got {self.second_phase_fraction!r}")
        put("second_phase_fraction", f)
        put("second_phase_load_sharing", options.positive(
            self.second_phase_load_sharing, "second_phase_load_sharing", allow_zero=True))
        if self.second_phase is not None and isinstance(self.second_phase, str) \
                and self.second_phase == self.phase:
            raise ValueError(f"second_phase: must differ from phase, got {self.second_phase!r}")

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

    def second_phase_fractions(self) -> np.ndarray:
        """Volume fraction of the second phase per frame (zeros without ``second_phase``).

        >>> TensileModel(applied_strain=[0, 0.05, 0.1], second_phase="Fe-fcc",
        ...              phase="Fe-bcc").second_phase_fractions().round(3).tolist()
        [0.5, 0.275, 0.05]
        """
        e = self.strain_schedule()
        if self.second_phase is None:
            return np.zeros_like(e)
        f0, f1 = self.second_phase_fraction
        top = float(e.max())
        r = e / top if top > 0 else np.zeros_like(e)
        return f0 * (1.0 - r) + f1 * r  # exactly f0 and f1 at the ends

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
        ``truth_azimuths_deg``, ``peak_shape``, ``eta``, ``m``, ``asymmetry``, ``second_phase``,
        ``second_phase_fraction``, ``second_phase_load_sharing``; ``energy_kev``, ``detector``, ``geometry``, ``shape``,
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
    if model.second_phase is None:
        refl = reflections(model.phase, energy_kev=energy, q_range=(0.0, pix.q_max + 1.0))
    else:
        refl = reflections([model.phase, model.second_phase], energy_kev=energy,
                           q_range=(0.0, pix.q_max + 1.0), name=phase_names(model))
    refl = refl.isel(reflection=np.flatnonzero(refl.intensity.values >= model.min_intensity))
    if refl.sizes["reflection"] == 0:
        raise ValueError(f"phase {model.phase!r}: no reflection on the detector above "
                         f"min_intensity={model.min_intensity}")
    if model.second_phase is not None and len(set(refl.phase.values.tolist())) != 2:
        raise ValueError(f"second_phase {model.second_phase!r}: both phases need a reflection on "
                         f"the detector above min_intensity={model.min_intensity}")
    return TensileRun(ai=ai, energy_kev=energy, reflections=refl, model=model, acquisition=acq, pixels=pix)
