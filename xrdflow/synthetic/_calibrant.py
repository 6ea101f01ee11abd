"""Synthetic powder calibrant image (LaB6 by default) at a known PONI, with its truth."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import options
from ..units import ANGSTROM, DEGREE, HC_KEV_A, INV_NM, KEV
from ._acquisition import (
    BACKGROUND_MODEL,
    Acquisition,
    build,
    finish,
    instrument_sigma_q,
    integrator_from_poni,
    pixels,
    poni_dict,
    split_keywords,
)

__all__ = ["CalibrantImage", "CalibrantModel", "calibrant_image"]

_EQUAL = "equal integrated intensity per ring (calibrant unknown to xrdflow.crystal)"


@dataclasses.dataclass(frozen=True)
class CalibrantModel:
    """The calibrant powder: which one and how strongly it scatters.

    Attributes
    ----------
    calibrant
        pyFAI calibrant name (ring d-spacings from :func:`pyFAI.calibrant.get_calibrant`);
        relative ring intensities from :func:`xrdflow.crystal.reflections` when it is a
        built-in phase there (LaB6, CeO2, Si...), otherwise equal.
    ring_counts
        Peak height (counts before solid angle/polarization) of the strongest ring.
    background
        Background counts per pixel at q -> 0 (``B(q) = background (0.2 + 0.8 exp(-q/30))``).

    Examples
    --------
    >>> CalibrantModel("CeO2").ring_counts
    20000.0
    """

    calibrant: str = "LaB6"
    ring_counts: float = 20000.0
    background: float = 400.0

    def __post_init__(self):
        if not isinstance(self.calibrant, str):
            raise ValueError(f"calibrant: must be a pyFAI calibrant name, got {self.calibrant!r}")
        object.__setattr__(self, "ring_counts", options.positive(self.ring_counts, "ring_counts"))
        object.__setattr__(self, "background", options.positive(self.background, "background", allow_zero=True))


class CalibrantImage(dict):
    """Truth of a synthetic calibrant image (a JSON-serialisable dict).

    Keys: ``kind``, ``calibrant``, ``energy_kev``, ``wavelength_a``, ``poni`` (pyFAI PONI
    values in m/rad + detector, shape, beam centre), ``rings`` (``d_spacing`` A, ``q`` 1/nm,
    ``two_theta`` deg, ``sigma_q`` 1/nm, ``intensity`` relative, ``height`` counts),
    ``polarization_factor``, ``ring_counts``, ``background``, ``dtype``, ``saturation``,
    ``seed``, ``defects``, ``model``. :meth:`integrator` rebuilds the pyFAI integrator.
    """

    def integrator(self):
        """A pyFAI AzimuthalIntegrator at the true geometry."""
        return integrator_from_poni(self["poni"])


def _calibrant_rings(calibrant: str, energy_kev: float, q_hi: float):
    """Ring d-spacings from pyFAI's calibrant, intensities from xrdflow.crystal when known."""
    from pyFAI.calibrant import get_calibrant

    from ..crystal import BUILTIN_PHASES, reflections

    try:
        cal = get_calibrant(calibrant)
    except Exception:
        raise ValueError(f"calibrant: unknown pyFAI calibrant {calibrant!r}") from None
    d = np.asarray(cal.dspacing, dtype=float)
    q = 20 * np.pi / d
    keep = q <= q_hi
    d, q = d[keep], q[keep]
    intensity = np.full(d.size, np.nan)
    source = _EQUAL
    if calibrant in BUILTIN_PHASES:
        ref = reflections(calibrant, energy_kev=energy_kev, q_range=(0.0, q_hi * 1.001))
        rd = ref.d_spacing.values
        ri = ref.intensity.values
        for n, dn in enumerate(d):
            close = np.abs(rd - dn) <= 2e-4 * dn
            if close.any():
                intensity[n] = ri[close].sum()
        source = "xrdflow.crystal.reflections (pymatgen, Lorentz-polarization), coincident families summed"
    missing = ~np.isfinite(intensity)
    if missing.all():
        intensity[:] = 100.0
        source = _EQUAL
    else:
        intensity[missing] = 0.0  # extinct in the structure model
        intensity *= 100.0 / intensity.max()
    return d, q, intensity, source


_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(CalibrantModel))


def calibrant_image(*, model: CalibrantModel | None = None, acquisition: Acquisition | None = None,
                    **kwargs: Any) -> tuple[np.ndarray, CalibrantImage]:
    """A synthetic powder calibrant image at a known PONI, with its truth.

    Parameters
    ----------
    model
        :class:`CalibrantModel` (calibrant, ring_counts, background); default LaB6.
    acquisition
        :class:`~xrdflow.synthetic.Acquisition` (detector, geometry, energy, shape, seed,
        optics, noise, storage); default a PerkinElmer at :data:`DEFAULT_GEOMETRY`, 87.1 keV.
    **kwargs
        Any field of either, overriding it (the keywords of xrdflow 0.1): ``calibrant``
        (default ``"LaB6"``), ``ring_counts`` (20000), ``background`` (400); ``energy_kev``,
        ``detector``, ``geometry``, ``shape``, ``seed`` (0), ``instrument_sigma_mm`` (0.2),
        ``polarization_factor`` (0.99), ``dtype`` ("uint16"), ``saturation``, ``defects``
        (False), ``band_sigmas`` (6). See the two classes for their meaning.

    Returns
    -------
    image : numpy.ndarray
        ``shape`` array of ``dtype``, as fabio would read the file.
    truth : CalibrantImage
        JSON-serialisable dict (see :class:`CalibrantImage`).

    Examples
    --------
    >>> img, truth = calibrant_image(shape=(256, 256), seed=1)
    >>> img.shape, img.dtype.name, truth["poni"]["detector"]
    ((256, 256), 'uint16', 'Perkin')
    >>> round(truth["rings"]["q"][0], 4)  # LaB6 100, 2 pi / 4.156826 A
    15.1153
    """
    model_kw, acq_kw = split_keywords(kwargs, _MODEL_FIELDS, function="calibrant_image")
    model = build(CalibrantModel, model, model_kw, "model")
    acq = build(Acquisition, acquisition, acq_kw, "acquisition")
    ai, energy = acq.integrator()
    wl_a = HC_KEV_A / energy
    pix = pixels(ai, acq.polarization_factor)
    d, q0, inten, source = _calibrant_rings(model.calibrant, energy, pix.q_max + 1.0)
    sig = instrument_sigma_q(q0, wl_a, ai.dist, acq.instrument_sigma_mm)
    strongest = int(np.argmax(inten))
    area = inten / 100.0 * model.ring_counts * math.sqrt(2 * math.pi) * sig[strongest]
    height = area / (math.sqrt(2 * math.pi) * sig)
    lam = pix.background(model.background)
    for i in range(q0.size):
        if height[i] <= 0:
            continue
        s = pix.band(q0[i] - acq.band_sigmas * sig[i], q0[i] + acq.band_sigmas * sig[i])
        if s.stop > s.start:
            pix.add_ring(lam, s, q0[i], sig[i], height[i])
    img = finish(lam, np.random.default_rng([acq.seed, 0xCA1B]), pix.shape, acq, acq.mask(pix.shape))
    tth = np.degrees(2 * np.arcsin(wl_a / (2 * d)))
    truth = CalibrantImage(
        kind="calibrant",
        calibrant=model.calibrant,
        energy_kev=energy,
        wavelength_a=wl_a,
        poni=poni_dict(ai),
        rings=dict(d_spacing=d.tolist(), q=q0.tolist(), two_theta=tth.tolist(),
                   sigma_q=sig.tolist(), intensity=inten.tolist(), height=height.tolist()),
        intensity_source=source,
        polarization_factor=acq.polarization_factor,
        ring_counts=model.ring_counts,
        background=model.background,
        background_model=BACKGROUND_MODEL,
        instrument_sigma_mm=acq.instrument_sigma_mm,
        dtype=acq.dtype,
        saturation=acq.saturation_level,
        seed=acq.seed,
        defects=acq.defects,
        model="counts ~ Poisson((B(q) + sum_i H_i exp(-(q-q_i)^2/2 s_i^2)) * solid_angle * polarization)",
        units=dict(q=INV_NM, d_spacing=ANGSTROM, two_theta=DEGREE, sigma_q=INV_NM, energy=KEV),
    )
    return img, truth
