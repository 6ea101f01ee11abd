"""A lazy synthetic tensile run: frames made on demand from the model, analytic truth."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import options
from ..profiles import SHAPE_PARAMETERS, integral_breadth, profile
from ..units import ANGSTROM, DEGREE, DIMENSIONLESS, HC_KEV_A, INV_NM, KEV, SECOND
from ._acquisition import BACKGROUND_MODEL, finish, instrument_sigma_q, integrator_from_poni, poni_dict

__all__ = ["TensileRun"]

_IMAGE_MODEL = ("counts ~ Poisson((B(q) + sum_i H_i exp(-(q-q_i(chi))^2/2 s_i^2))"
                " * solid_angle * polarization)")
_STRAIN_MODEL = ("eps(psi) = eps_axial cos^2 psi + eps_transverse sin^2 psi, "
                 "cos psi = cos(theta0) cos(chi - load_azimuth); q = q0/(1+eps)")
_PROFILE_IMAGE_MODEL = ("counts ~ Poisson((B(q) + sum_i H_i profile(q; q_i(chi), fwhm_i, shape, eta, m,"
                        " asymmetry)) * solid_angle * polarization)")
_RING_AVERAGE_KEYS = ("ring_q_mean", "ring_sigma_rms", "ring_q_fit", "ring_sigma_fit")
_RING_AVERAGE_PROFILE_KEYS = ("ring_q_center", "ring_q_peak", "ring_fwhm")
#: FWHM of a Gaussian of unit sigma, 2 sqrt(2 ln 2)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: rings of heavy-tailed shapes are evaluated where the profile exceeds this (of the height)
TAIL_TOLERANCE = 1e-6


def phase_names(model) -> list[str] | None:
    """Labels of the two phases of a two-phase model (None for one phase): their
    :func:`xrdflow._phases.phase_name`, made unique (``"-2"`` appended) if they clash."""
    if model.second_phase is None:
        return None
    from .._phases import phase_name

    names = [phase_name(model.phase), phase_name(model.second_phase)]
    if names[0] == names[1]:
        names[1] += "-2"
    return names


def tail_half_width(shape: str, eta: float, m: float, asymmetry: float,
                    tol: float = TAIL_TOLERANCE) -> float:
    """Half width (in units of the FWHM) beyond which ``profile`` is below ``tol`` (0 for
    the Gaussian, whose band is ``band_sigmas`` sigma)."""
    g = math.sqrt(math.log(1.0 / tol) / (4.0 * math.log(2.0)))
    if shape == "gaussian":
        return 0.0
    if shape == "pearson7":
        c = 2.0 ** (1.0 / m) - 1.0
        return math.sqrt((tol ** (-1.0 / m) - 1.0) / (4.0 * c))
    lor = 1.0 if shape == "lorentzian" else eta
    t = g if lor < 1 else 0.0
    if lor > 0:  # eta L(t) <= tol / 2 and (1 - eta) G(t) <= tol / 2
        t = max(t, 0.5 * math.sqrt(max(2.0 * lor / tol - 1.0, 0.0)))
    if shape == "split_pseudo_voigt":
        t *= 1.0 + abs(asymmetry)
    return t


def _params(model, acq) -> dict[str, Any]:
    """All parameters of a run, as recorded in its truth (``TensileRun.params``)."""
    return dict(
        seed=acq.seed, yield_strain=model.yield_strain, poisson_ratio=model.poisson_ratio,
        hardening_ratio=model.hardening_ratio, load_sharing=model.load_sharing_factors(),
        load_sharing_default=1.0, broadening=model.broadening, load_azimuth_deg=model.load_azimuth_deg,
        youngs_modulus_gpa=model.youngs_modulus_gpa, cross_section_mm2=model.cross_section_mm2,
        frame_period_s=model.frame_period_s, ring_counts=model.ring_counts, background=model.background,
        min_intensity=model.min_intensity, instrument_sigma_mm=acq.instrument_sigma_mm,
        polarization_factor=acq.polarization_factor, dtype=acq.dtype, saturation=acq.saturation_level,
        defects=acq.defects, band_sigmas=acq.band_sigmas, phase=str(model.phase),
        peak_shape=model.peak_shape, eta=model.eta, m=model.m, asymmetry=model.asymmetry,
        second_phase=None if model.second_phase is None else str(model.second_phase),
        second_phase_fraction=list(model.second_phase_fraction),
        second_phase_load_sharing=model.second_phase_load_sharing,
    )


class TensileRun:
    """Lazy synthetic tensile test: frames are made on demand, truth is analytic.

    Made by :func:`tensile_run`. ``len(run)`` frames; ``run.frame(k)`` (k = 0..n-1) makes one
    image, iterating yields all images in order with flat memory. ``run.log`` holds the
    beamline log columns, ``run.truth()`` the JSON-serialisable truth, ``run.truth_at()`` the
    model at any azimuth, ``run.integrator()`` a pyFAI integrator at the true geometry;
    ``run.model`` and ``run.acquisition`` the dataclasses it was made from.
    """

    def __init__(self, *, ai, energy_kev, reflections, model, acquisition, pixels):
        self._ai = ai
        self.model = model
        self.acquisition = acquisition
        self.energy_kev = energy_kev
        self.wavelength_a = HC_KEV_A / energy_kev
        self.reflections = reflections
        self.labels = [str(v) for v in reflections.reflection.values]
        self.q0 = np.asarray(reflections.q.values, dtype=float)
        theta0 = np.arcsin(self.q0 * self.wavelength_a / (40 * np.pi))
        self._cos2theta = np.cos(theta0) ** 2
        self.applied_strain = np.asarray(model.strain_schedule(), dtype=float)
        self.frame_numbers = np.asarray(model.first_frame + np.arange(self.applied_strain.size), dtype=np.int64)
        self.params = p = _params(model, acquisition)
        self._pix = pixels
        self.mask = acquisition.mask(pixels.shape)
        self.truth_azimuths_deg = np.asarray(model.azimuths_deg(), dtype=float)
        sig_inst = instrument_sigma_q(self.q0, self.wavelength_a, ai.dist, p["instrument_sigma_mm"])
        self.sigma_instrument = sig_inst
        self.load_sharing = np.array([p["load_sharing"].get(h, p["load_sharing_default"])
                                      for h in reflections.hkl.values], dtype=float)
        # phases: the second phase's reflections share its own load-sharing factor
        self.phase_of = [str(v) for v in reflections.phase.values]
        self.phases = phase_names(model) or [self.phase_of[0]]
        self.is_second_phase = np.zeros(self.q0.size, dtype=bool)
        if model.second_phase is not None:
            self.is_second_phase = np.array([ph == self.phases[1] for ph in self.phase_of])
            self.load_sharing[self.is_second_phase] = model.second_phase_load_sharing
        self.shape = model.peak_shape
        self.shape_parameters = {"eta": model.eta, "m": model.m, "asymmetry": model.asymmetry}
        inten = np.asarray(reflections.intensity.values, dtype=float)
        strongest = int(np.argmax(inten))
        if self.shape == "gaussian":
            self._area = inten / 100.0 * p["ring_counts"] * math.sqrt(2 * math.pi) * sig_inst[strongest]
        else:  # the strongest ring (at volume fraction 1) still has height ring_counts at frame 0
            self._area = inten / 100.0 * p["ring_counts"] * integral_breadth(
                FWHM_PER_SIGMA * sig_inst[strongest], self.shape, eta=model.eta, m=model.m)
        self.eps_axial, self.eps_transverse, self.sigma, self.log = _mechanics(
            p, self.applied_strain, self.frame_numbers, self.q0, sig_inst, self.load_sharing)
        f2 = np.asarray(model.second_phase_fractions(), dtype=float)
        self.second_phase_fraction = f2
        #: volume fraction of each reflection's phase [frame, reflection] (1 for one phase)
        self.phase_fraction = np.where(self.is_second_phase[None, :], f2[:, None], 1.0 - f2[:, None])
        #: ring area in q (counts * 1/nm, before corrections) [frame, reflection]
        self.area = self._area[None, :] * self.phase_fraction
        #: full width at half maximum [frame, reflection] (1/nm)
        self.fwhm = FWHM_PER_SIGMA * self.sigma
        if self.shape == "gaussian":
            self.height = self.area / (math.sqrt(2 * math.pi) * self.sigma)
        else:
            self.height = self.area / integral_breadth(self.fwhm, self.shape, eta=model.eta, m=model.m)

    # -------------------------------------------------------------- model
    def __len__(self) -> int:
        return int(self.applied_strain.size)

    def _index(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -len(self) <= k < len(self):
            raise ValueError(f"frame index must be an integer in 0..{len(self) - 1}, got {k!r}")
        return int(k) % len(self)

    def truth_at(self, k: int, azimuth_deg: Any) -> dict[str, np.ndarray]:
        """Model at frame index ``k`` and azimuths ``azimuth_deg`` (pyFAI chi, degrees).

        Returns a dict of arrays (reflection, azimuth): ``q_center`` (1/nm),
        ``lattice_strain`` (d/d0 - 1); and (reflection,): ``sigma``, ``fwhm`` (1/nm),
        ``height`` (counts, before corrections), ``phase_fraction``.

        Examples
        --------
        >>> from xrdflow.synthetic import tensile_run
        >>> run = tensile_run(3, shape=(256, 256))
        >>> t = run.truth_at(2, [0.0, 90.0])
        >>> bool(t["lattice_strain"][0, 0] > 0 > t["lattice_strain"][0, 1])
        True
        """
        k = self._index(k)
        chi = np.radians(np.atleast_1d(np.asarray(azimuth_deg, dtype=float)))
        eps = self._strain(k, chi[None, :], self._cos2theta[:, None])
        return {"q_center": self.q0[:, None] / (1.0 + eps), "lattice_strain": eps,
                "sigma": self.sigma[k].copy(), "fwhm": self.fwhm[k].copy(),
                "height": self.height[k].copy(), "phase_fraction": self.phase_fraction[k].copy()}

    def _strain(self, k, chi, cos2theta):
        c2 = cos2theta * np.cos(chi - math.radians(self.params["load_azimuth_deg"])) ** 2
        ea = self.eps_axial[k]
        et = self.eps_transverse[k]
        if np.ndim(chi) == 2:
            ea, et = ea[:, None], et[:, None]
        return et + (ea - et) * c2

    def ring_average(self, k: int, *, n_azimuth: int = 32, n_q: int = 201) -> dict[str, np.ndarray]:
        """What a full-azimuth 1D integration + single-Gaussian fit sees (per reflection).

        The noise-free ring profile averaged uniformly over chi (solid angle and
        polarization corrected) is computed on a fine q grid (``n_q`` points over the ring
        +- 6 rms); returns its first moment ``ring_q_mean`` and rms width ``ring_sigma_rms``
        and the least-squares Gaussian fit (no background) ``ring_q_fit``,
        ``ring_sigma_fit`` (1/nm). The chi average uses the midpoint rule on
        ``n_azimuth`` points of a quarter period (q depends on cos^2(chi - load axis)), which
        converges exponentially for this smooth periodic integrand.

        Each reflection alone (overlapping rings of a two-phase run are not summed). For a
        non-Gaussian ``shape`` a single-Gaussian fit and the second moment are meaningless
        (a Lorentzian has neither a mean nor a variance), so those four keys are left out;
        instead, from the true profile averaged over chi on a grid of ``4 n_q + 1`` points:
        ``ring_q_center`` (the chi-mean of ``q_center``, the centre of symmetry of a
        symmetric shape), ``ring_q_peak`` (where the averaged profile peaks) and
        ``ring_fwhm`` (its full width at half maximum, 1/nm).
        """
        k = self._index(k)
        if options.positive_int(n_azimuth, "n_azimuth") < 4:
            raise ValueError(f"n_azimuth: must be an integer >= 4, got {n_azimuth!r}")
        if options.positive_int(n_q, "n_q") < 21:
            raise ValueError(f"n_q: must be an integer >= 21, got {n_q!r}")
        dchi = (np.arange(n_azimuth) + 0.5) * (0.5 * np.pi / n_azimuth)
        lsa = math.radians(self.params["load_azimuth_deg"])
        qc = self.q0[:, None] / (1.0 + self._strain(k, dchi[None, :] + lsa, self._cos2theta[:, None]))
        sig = self.sigma[k]
        if self.shape != "gaussian":
            return self._ring_average_profile(k, qc, n_q)
        mean = qc.mean(axis=1)
        rms = np.sqrt(sig ** 2 + qc.var(axis=1))
        half = 6 * rms
        x = mean[:, None] + np.linspace(-1, 1, n_q)[None, :] * half[:, None]
        z = (x[:, :, None] - qc[:, None, :]) / sig[:, None, None]
        y = np.exp(-0.5 * z * z).mean(axis=2)
        q_fit, s_fit = _fit_gaussians(x, y, mean, rms)
        return {"ring_q_mean": mean, "ring_sigma_rms": rms, "ring_q_fit": q_fit, "ring_sigma_fit": s_fit}

    def _ring_average_profile(self, k, qc, n_q):
        fw = self.fwhm[k]
        center = qc.mean(axis=1)
        spread = qc.max(axis=1) - qc.min(axis=1)
        half = spread + 3.0 * fw * (1.0 + abs(self.shape_parameters["asymmetry"]))
        x = center[:, None] + np.linspace(-1, 1, 4 * n_q + 1)[None, :] * half[:, None]
        y = profile(x[:, :, None], qc[:, None, :], fw[:, None, None], self.shape,
                    **self.shape_parameters).mean(axis=2)
        peak = np.empty_like(center)
        width = np.empty_like(center)
        for i in range(center.size):
            peak[i], width[i] = _half_maximum(x[i], y[i])
        return {"ring_q_center": center, "ring_q_peak": peak, "ring_fwhm": width}

    # -------------------------------------------------------------- images
    def frame(self, k: int) -> np.ndarray:
        """Image of frame index ``k`` (0-based position in the run), as fabio reads it."""
        k = self._index(k)
        p = self.params
        pix = self._pix
        lam = pix.background(p["background"])
        eps_lo = min(self.eps_axial[k].min(), self.eps_transverse[k].min())
        eps_hi = max(self.eps_axial[k].max(), self.eps_transverse[k].max())
        nb = p["band_sigmas"]
        lsa = math.radians(p["load_azimuth_deg"])
        gaussian = self.shape == "gaussian"
        tail = tail_half_width(self.shape, **self.shape_parameters)
        for i in range(self.q0.size):
            sig = self.sigma[k, i]
            ea, et = self.eps_axial[k, i], self.eps_transverse[k, i]
            reach = nb * sig if gaussian else max(nb * sig, tail * self.fwhm[k, i])
            lo = self.q0[i] / (1.0 + max(ea, et, eps_hi)) - reach
            hi = self.q0[i] / (1.0 + min(ea, et, eps_lo)) + reach
            s = pix.band(lo, hi)
            if s.stop <= s.start:
                continue
            c2 = self._cos2theta[i] * np.cos(pix.chi[s] - lsa) ** 2
            qc = self.q0[i] / (1.0 + (et + (ea - et) * c2))
            if gaussian:
                pix.add_ring(lam, s, qc, sig, self.area[k, i] / (math.sqrt(2 * math.pi) * sig))
            else:
                ring = profile(pix.q[s], qc, self.fwhm[k, i], self.shape, **self.shape_parameters)
                lam[pix.order[s]] += self.height[k, i] * ring * pix.corr[s]
        rng = np.random.default_rng([p["seed"], int(self.frame_numbers[k])])
        return finish(lam, rng, pix.shape, self.acquisition, self.mask)

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self)):
            yield self.frame(k)

    def integrator(self):
        """A pyFAI AzimuthalIntegrator at the true geometry."""
        return integrator_from_poni(poni_dict(self._ai))

    # -------------------------------------------------------------- truth
    def truth(self, *, ring_average: bool = True) -> dict[str, Any]:
        """JSON-serialisable truth of the whole run (no images are made).

        Keys: ``kind``, ``phase``, ``energy_kev``, ``wavelength_a``, ``poni``, ``model``
        (all parameters), ``reflections`` (label, hkl, q0, d0, two_theta0, intensity,
        load_sharing, sigma_instrument), ``azimuth_deg`` (truth samples, pyFAI chi),
        ``frames``: ``frame``, ``applied_strain``, ``load_N``, ``time_s`` (per frame),
        ``eps_axial``, ``eps_transverse``, ``sigma`` [frame][reflection], the strain tensor
        the model implies ``strain_axial``, ``strain_transverse``, ``strain_shear`` (0),
        ``strain_out_of_plane`` [frame][reflection] (sample frame: 1 load, 2 across it in the
        detector plane, 3 beam; see :func:`xrdflow.strain_tensor`), ``q_center``,
        ``lattice_strain`` [frame][reflection][azimuth], and with ``ring_average`` the
        :meth:`ring_average` values [frame][reflection].

        The ring profile: ``shape``, ``eta``, ``m``, ``asymmetry`` (top level; the shape
        parameters a shape does not use are listed in ``shape_parameters_used``), and per
        frame x reflection ``fwhm`` (1/nm; ``2 sqrt(2 ln 2) sigma``), ``height`` (counts
        at the ring centre before solid angle and polarization), ``area`` (counts * 1/nm)
        and ``phase_fraction`` (volume fraction of the reflection's phase). ``phases``
        lists the phases, ``reflections["phase"]`` each reflection's; ``frames
        ["second_phase_fraction"]`` is the second phase's fraction per frame (0 for one
        phase).
        """
        return run_truth(self, ring_average=ring_average)

    def __repr__(self) -> str:
        return (f"TensileRun({len(self)} frames, shape={self._pix.shape}, {len(self.labels)} reflections, "
                f"{self.energy_kev} keV, strain {self.applied_strain[0]:.4g}..{self.applied_strain[-1]:.4g})")


def _mechanics(p, e, frame_numbers, q0, sig_inst, load_sharing):
    """Lattice strains (axial, transverse), widths [frame, reflection] and the log columns
    of the applied strains ``e`` under the parameters ``p`` (bilinear hardening)."""
    ey = p["yield_strain"]
    plastic = np.maximum(e - ey, 0.0)
    eps_axial = np.minimum(e, ey)[:, None] + p["hardening_ratio"] * load_sharing[None, :] * plastic[:, None]
    eps_transverse = -p["poisson_ratio"] * eps_axial
    sigma = np.sqrt(sig_inst[None, :] ** 2 + (q0[None, :] * p["broadening"] * plastic[:, None]) ** 2)
    stress = p["youngs_modulus_gpa"] * 1e3 * (np.minimum(e, ey) + p["hardening_ratio"] * plastic)
    log = {
        "frame": frame_numbers.copy(),
        "applied_strain": e.copy(),
        "load_N": stress * p["cross_section_mm2"],
        "time_s": np.arange(e.size) * p["frame_period_s"],
    }
    return eps_axial, eps_transverse, sigma, log


def run_truth(run: TensileRun, *, ring_average: bool = True) -> dict[str, Any]:
    """JSON-serialisable truth of ``run`` (see :meth:`TensileRun.truth`)."""
    refl = run.reflections
    gaussian = run.shape == "gaussian"
    return {
        "kind": "tensile_run",
        "phase": str(refl.attrs.get("phase", "")),
        "phases": list(run.phases),
        "second_phase": run.phases[1] if run.model.second_phase is not None else None,
        "shape": run.shape,
        **{k: float(v) for k, v in run.shape_parameters.items()},
        "shape_parameters_used": list(SHAPE_PARAMETERS[run.shape]),
        "energy_kev": run.energy_kev,
        "wavelength_a": run.wavelength_a,
        "poni": poni_dict(run._ai),
        "model": dict(run.params, load_sharing=dict(run.params["load_sharing"]),
                      image_model=_IMAGE_MODEL if gaussian else _PROFILE_IMAGE_MODEL,
                      strain_model=_STRAIN_MODEL,
                      background_model=BACKGROUND_MODEL),
        "reflections": {
            "label": run.labels,
            "hkl": [str(v) for v in refl.hkl.values],
            "q0": run.q0.tolist(),
            "d0": refl.d_spacing.values.tolist(),
            "two_theta0": refl.two_theta.values.tolist(),
            "intensity": refl.intensity.values.tolist(),
            "load_sharing": run.load_sharing.tolist(),
            "sigma_instrument": run.sigma_instrument.tolist(),
            "fwhm_instrument": (FWHM_PER_SIGMA * run.sigma_instrument).tolist(),
            "phase": list(run.phase_of),
        },
        "azimuth_deg": run.truth_azimuths_deg.tolist(),
        "frames": _frames_truth(run, ring_average),
        "units": dict(q=INV_NM, sigma=INV_NM, fwhm=INV_NM, height="counts",
                      area=f"counts * {INV_NM}", d=ANGSTROM, two_theta=DEGREE, azimuth="deg (pyFAI chi)",
                      lattice_strain=f"{DIMENSIONLESS} (d/d0 - 1)", load="N", time=SECOND, energy=KEV),
    }


def _frames_truth(run: TensileRun, ring_average: bool) -> dict[str, list]:
    az = run.truth_azimuths_deg
    qc, eps = [], []
    for k in range(len(run)):
        t = run.truth_at(k, az)
        qc.append(t["q_center"].tolist())
        eps.append(t["lattice_strain"].tolist())
    frames = {key: np.asarray(v).tolist() for key, v in run.log.items()}
    frames.update(eps_axial=run.eps_axial.tolist(), eps_transverse=run.eps_transverse.tolist(),
                  sigma=run.sigma.tolist(), q_center=qc, lattice_strain=eps)
    # the strain tensor per frame x reflection that the model implies, in the sample frame
    # (axis 1 along the load, 2 across it in the detector plane, 3 along the beam):
    # eps(q) = n.E.n with E = diag(eps_axial, eps_transverse, eps_transverse)
    frames.update(strain_axial=run.eps_axial.tolist(), strain_transverse=run.eps_transverse.tolist(),
                  strain_shear=np.zeros_like(run.eps_axial).tolist(),
                  strain_out_of_plane=run.eps_transverse.tolist())
    frames.update(fwhm=run.fwhm.tolist(), height=run.height.tolist(), area=run.area.tolist(),
                  phase_fraction=run.phase_fraction.tolist(),
                  second_phase_fraction=run.second_phase_fraction.tolist())
    if ring_average:
        ra = [run.ring_average(k) for k in range(len(run))]
        for key in _RING_AVERAGE_KEYS if run.shape == "gaussian" else _RING_AVERAGE_PROFILE_KEYS:
            frames[key] = [r[key].tolist() for r in ra]
    return frames


def _half_maximum(x, y):
    """(position of the maximum, full width at half maximum) of a sampled single peak,
    the crossings interpolated linearly."""
    j = int(np.argmax(y))
    if 0 < j < y.size - 1:  # parabola through the top three points
        d = y[j - 1] - 2 * y[j] + y[j + 1]
        off = 0.5 * (y[j - 1] - y[j + 1]) / d if d < 0 else 0.0
        top = y[j] - 0.25 * (y[j - 1] - y[j + 1]) * off
        xp = x[j] + off * (x[1] - x[0])
    else:
        top, xp = y[j], x[j]
    h = 0.5 * top
    left = np.flatnonzero(y[:j] < h)
    right = np.flatnonzero(y[j:] < h)
    if left.size == 0 or right.size == 0:
        return float(xp), float("nan")
    a = left[-1]
    b = j + right[0]
    xl = x[a] + (h - y[a]) * (x[a + 1] - x[a]) / (y[a + 1] - y[a])
    xr = x[b - 1] + (h - y[b - 1]) * (x[b] - x[b - 1]) / (y[b] - y[b - 1])
    return float(xp), float(xr - xl)


def _fit_gaussians(x, y, mu0, s0, n_iter: int = 50):
    """Batched Gauss-Newton least-squares fit of A exp(-(x-mu)^2/2s^2) to rows of y."""
    mu = mu0.astype(float).copy()
    s = s0.astype(float).copy()
    amp = y.max(axis=1)
    for _ in range(n_iter):
        u = (x - mu[:, None]) / s[:, None]
        g = np.exp(-0.5 * u * u)
        f = amp[:, None] * g
        r = y - f
        jac = np.stack([g, f * u / s[:, None], f * u * u / s[:, None]], axis=-1)  # d/dA, d/dmu, d/ds
        jtj = np.einsum("bni,bnj->bij", jac, jac)
        jtr = np.einsum("bni,bn->bi", jac, r)
        step = np.linalg.solve(jtj, jtr[..., None])[..., 0]
        amp = amp + step[:, 0]
        mu = mu + step[:, 1]
        s = np.abs(s + step[:, 2])
        if np.all(np.abs(step[:, 1]) < 1e-12 * np.abs(mu)) and np.all(np.abs(step[:, 2]) < 1e-12 * s):
            break
    return mu, s
