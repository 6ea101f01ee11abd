"""Physically faithful synthetic experiments with exact ground truth.

Two kinds of synthetic data, both made with pyFAI's own geometry (pixel q, azimuth,
solid angle and polarization come from :class:`pyFAI.integrator.azimuthal.AzimuthalIntegrator`),
deterministic from a seed, and written as a beamline writes them:

* :func:`calibrant_image` / :func:`write_calibrant`: a powder calibrant (LaB6 by default, ring
  positions from pyFAI's calibrant, ring intensities from :func:`xrdflow.crystal.reflections`)
  on a flat panel (pyFAI ``"Perkin"``: PerkinElmer 2048 x 2048, 200 um) at 87.1 keV.
* :func:`tensile_run` / :func:`write_tensile_run`: an in-situ tensile test of hcp Mg
  (reflections and relative intensities from :func:`xrdflow.crystal.reflections`), N frames
  with an applied-strain schedule, azimuth-dependent lattice strain and plastic broadening.
* :func:`write_demo`: a complete demo input folder (calibrant + run).
* :func:`pattern_run`: 1-D patterns (frame, azimuth, q) of known peaks of any
  :data:`xrdflow.profiles.SHAPES` shape on a Chebyshev background, Poisson noise or none,
  with drifting and vanishing peaks, and the exact parameters (position, fwhm, amplitude,
  area, eta, m, asymmetry, background coefficients) on (frame, azimuth, peak): the ground
  truth of peak-fit tests.

Each is described by two frozen, validated dataclasses: a sample model
(:class:`CalibrantModel` or :class:`TensileModel`: phase, peaks, strains, widths, counts) and
an :class:`Acquisition` (detector, geometry, energy, optics, noise, dtype, saturation,
defects), shared by the calibrant and the run of one experiment. The functions take them as
``model=`` and ``acquisition=``, and any of their fields as keywords (which override them)::

    acq = Acquisition(shape=(512, 512), seed=3)
    img, truth = calibrant_image(acquisition=acq)
    run = tensile_run(acquisition=acq, model=TensileModel(max_strain=0.05), n_frames=20)

Modules: ``_acquisition`` (detector, geometry, pixel arrays, defects, noise), ``_calibrant``,
``_tensile`` (model and :func:`tensile_run`), ``_run`` (:class:`TensileRun`), ``_writers``,
``_patterns`` (:func:`pattern_run`).

Image model
-----------
For each pixel with centre scattering vector length ``q`` (1/nm) and azimuth ``chi``
(pyFAI ``center_array``), the expected counts are::

    lambda = [ B(q) + sum_i H_i * exp(-(q - q_i(chi))**2 / (2 sigma_i**2)) ] * Omega * P

``Omega`` is pyFAI's relative solid angle (``solidAngleArray``, 1 at the PONI) and ``P`` its
polarization factor (``polarization(factor=polarization_factor)``), so a pyFAI integration
with ``correctSolidAngle=True`` and ``polarization_factor=<truth polarization_factor>``
divides them out and recovers ``B(q) + rings`` exactly (up to binning). ``B(q) =
background * (0.2 + 0.8 * exp(-q / 30 nm^-1))`` models air/amorphous scatter decaying with q.
The rings are evaluated at pixel centres (the Gaussian sigma therefore includes the pixel
response) and only within ``band_sigmas`` (default 6) sigma of the ring, where the
truncated tail is below 1.6e-8 of the peak. ``H_i`` is the peak height; the ring's area in
q (counts * 1/nm, i.e. the area under a corrected, azimuthally averaged 1D pattern) is
proportional to the relative intensity from :func:`xrdflow.crystal.reflections` and does
not change when a ring broadens. The strongest ring has height ``ring_counts`` at frame 0.
Counts are Poisson draws (:class:`numpy.random.Generator`), clipped at ``saturation``
and stored as ``dtype`` (uint16 for the PerkinElmer, as a 16-bit panel writes them).

Peak shapes: with ``TensileModel(peak_shape=...)`` (``"gaussian"`` by default, the image
above bit for bit) the Gaussian is replaced by ``H_i * profile(q; q_i(chi), fwhm_i, shape,
eta=, m=, asymmetry=)`` of :func:`xrdflow.profiles.profile` with ``fwhm_i = 2 sqrt(2 ln 2)
sigma_i`` (the strain and width models are unchanged), and ``H_i = area_i /
integral_breadth`` so the ring's area is the same as for the Gaussian of that ``sigma_i``
and the strongest ring is still ``ring_counts`` high at frame 0. Heavy-tailed rings are
evaluated where the profile exceeds 1e-6 of the height (``band_sigmas`` sigma at least):
about 500 FWHM for a Lorentzian, i.e. the whole detector. Reflections more than 1 1/nm beyond
the detector's q range are left out (their tails too).

Two phases: ``TensileModel(phase="Fe-bcc", second_phase="Fe-fcc")`` adds the rings of a second
phase (each phase's intensities relative to its own strongest = 100). Its volume fraction
``f`` falls (or rises) linearly with applied strain from ``second_phase_fraction[0]`` at 0 to
``[1]`` at the largest applied strain (default 0.5 -> 0.05: austenite transforming under load),
the first phase has ``1 - f``, and each ring's area is its single-phase area times its phase's
fraction (the phases' scattering power per volume is not modelled). Both phases follow the
strain model; after yield the second phase's reflections all use the load-sharing factor
``second_phase_load_sharing`` (default 2.5), so the phases strain differently and the
separation of overlapping rings (ferrite 110 / austenite 111: 0.69 1/nm, about one FWHM on a
512 x 512 Perkin at ``instrument_sigma_mm=0.8``) changes with load.

Strain model (tensile run)
--------------------------
Applied engineering strain ``e`` per frame (linear ramp 0 -> ``max_strain`` by default).
For each reflection ``i``::

    eps_axial_i(e)      = e                                        e <= yield_strain
                        = yield_strain + h * s_i * (e - yield_strain)  beyond
    eps_transverse_i(e) = -poisson_ratio * eps_axial_i(e)
    eps_i(psi)          = eps_axial_i cos^2 psi + eps_transverse_i sin^2 psi
    q_i(chi)            = q0_i / (1 + eps_i(psi))      (lattice strain = d/d0 - 1 = eps)

with ``h = hardening_ratio`` (tangent modulus / Young's modulus) and ``s_i`` the grain-family
load-sharing factor (``load_sharing``; Mg defaults: 10-10 0.6, 0002 1.5, 10-11 1.0, others 1.0:
prism-oriented grains relax by easy prismatic slip, the hard c-axis family takes more load).
``psi`` is the angle between the *exact* scattering vector of the ring and the load axis,
which lies in the sample plane normal to the beam at detector azimuth ``load_azimuth_deg``
(pyFAI chi convention: 0 deg along +x, the image's fast axis; 90 deg along +y, the rows):
``cos psi = cos(theta_i) cos(chi - load_azimuth)`` with ``theta_i`` the unstrained Bragg angle
(the scattering vector tilts by theta out of the detector plane; at 87 keV cos^2 theta =
0.9993). Peak width::

    sigma_i(e) = sqrt(sigma_inst_i**2 + (q0_i * broadening * max(e - yield_strain, 0))**2)

with ``sigma_inst_i`` the instrumental width ``instrument_sigma_mm`` (a radial length on the
detector: beam size, sample thickness, point spread; default 0.2 mm = one PerkinElmer pixel)
converted to q at the ring's 2theta and the PONI distance. The load (N) follows a bilinear
engineering stress-strain curve ``E min(e, e_y) + h E max(e - e_y, 0)`` times the
cross-section. Frames are independent: frame ``k`` uses ``default_rng([seed, k])`` so any
frame can be made alone, in any order, on any worker.

Truth is exact to this model: per frame x reflection x sampled azimuth ``q_center`` (1/nm),
``lattice_strain``; per frame x reflection ``sigma`` (1/nm, azimuth independent),
``eps_axial``, ``eps_transverse``, the strain tensor the model implies (``strain_axial``,
``strain_transverse``, ``strain_shear`` = 0, ``strain_out_of_plane`` = eps_transverse, in the
sample frame of :func:`xrdflow.strain_tensor`: 1 load, 2 across it in the detector plane, 3
beam; the model is ``eps = n.E.n`` with ``E = diag(eps_axial, eps_transverse, eps_transverse)``
and ``n`` the exact scattering vector), and the ring-averaged values that a full-azimuth 1D
integration (uniform weight in chi, corrections applied) followed by a single-Gaussian
least-squares fit would see (``ring_q_fit``, ``ring_sigma_fit``) and its first two moments
(``ring_q_mean``, ``ring_sigma_rms``). Pixel footprint (pixel splitting) and bin width
broaden a measured profile beyond ``sigma`` (a box of width w adds w**2/12 to sigma**2); they
do not shift the centres. Per frame x reflection the truth also has ``fwhm``, ``height``,
``area`` and ``phase_fraction`` (and ``second_phase_fraction`` per frame), at the top level
``shape``, ``eta``, ``m``, ``asymmetry``, ``phases``, ``second_phase``, and per reflection
``reflections["phase"]``. For a non-Gaussian shape the ring average is ``ring_q_center``,
``ring_q_peak`` and ``ring_fwhm`` of the true chi-averaged profile instead of the
single-Gaussian ``ring_q_fit``/``ring_sigma_fit`` and the moments (a Lorentzian has no mean or
variance), which are left out.

"""

from __future__ import annotations

from ._acquisition import DEFAULT_GEOMETRY, Acquisition, defect_mask
from ._calibrant import CalibrantImage, CalibrantModel, calibrant_image
from ._patterns import pattern_run
from ._run import TensileRun
from ._tensile import MG_LOAD_SHARING, TensileModel, tensile_run
from ._writers import write_calibrant, write_demo, write_tensile_run

__all__ = [
    "DEFAULT_GEOMETRY",
    "MG_LOAD_SHARING",
    "Acquisition",
    "CalibrantImage",
    "CalibrantModel",
    "TensileModel",
    "TensileRun",
    "calibrant_image",
    "defect_mask",
    "pattern_run",
    "tensile_run",
    "write_calibrant",
    "write_tensile_run",
    "write_demo",
]
