"""Geometry sweeps: energy x reflection [x thickness] as labeled, lazy data.

For a phase, :func:`sweep` answers for whole ranges at once what an experiment planner asks
one point at a time:

1. is the sample too absorbing or too thick at this energy (attenuation length,
   transmission through ``thickness_mm``, from xraydb's Elam tables);
2. does this reflection at this energy give a diffraction angle the instrument can reach
   (d, q, 2theta, Bragg angle, relative intensity, ``reachable``);
3. how must the mounted crystal be rotated to bring the reflection into the Bragg
   condition (goniometer angles and diffracted-beam direction, NaN where none exists).

Conventions
-----------
Lab frame (right-handed): the incident beam travels along +x, z points up, y = z x x
(horizontal, to the left when looking downstream). Wave vectors in 1/Angstrom with
``|k| = 2 pi / lambda``; a reciprocal lattice vector ``G = 2 pi (h a* + k b* + l c*)``.
The Laue condition is ``k_out - k_in = G_lab``.

Mount: the orientation matrix ``U`` maps the crystal's Cartesian frame (pymatgen's
``lattice.matrix`` frame) to the lab frame with all goniometer angles at zero:
``v_lab = U @ v_cart``. :func:`mount` builds it from a crystal direction ``[uvw]`` or plane
normal ``(hkl)`` that is vertical (along +z, the goniometer axis) and another along the
beam (+x); the beam one is made exactly perpendicular to the vertical one (Gram-Schmidt) and
the angle it had to be moved is recorded.

Goniometer (:func:`goniometer_rotation`): ``R = Rz(omega) @ Rx(chi) @ Ry(phi)``. ``omega``
is a right-handed rotation about the vertical lab axis z (the base circle); ``chi`` and
``phi`` are right-handed tilts about the sample's x and y axes, which coincide with the lab
x (beam) and y axes at omega = 0 and ride on omega. ``G_lab = R @ U @ G_cart``.

* ``stage="omega"`` (one circle): for each reflection and energy there are in general two
  omega solutions (``solution`` = 0, 1), NaN where none exists (the reflection's G is too
  close to the rotation axis, or no Bragg angle exists); the scattering azimuth follows.
* ``stage="omega-chi"`` / ``"omega-phi"`` (two circles: omega plus a tilt chi about the
  sample's x axis, or phi about its y axis): the scattering plane is fixed
  (``scattering_plane="vertical"``: diffracted beam up, in the x-z plane;
  ``"horizontal"``: towards +y, in the x-y plane) and (omega, tilt) solve for it; again two
  solutions, NaN where the tilt axis cannot reach (the inner tilt keeps G's component
  along its own axis, so not every reflection can be put in every plane).

Which reflection is oriented: the indices in the ``reflection`` label. By default these are
the family representatives (``"Mg 10-10"`` -> (1, 0, 0)); pass ``reflections=[...]`` with
specific members (``"01-10"``, ``(0, 1, 0)``) to get the angles for those. Families'
other members have other angles: they are separate reflections for orientation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from . import _scattering
from ._goniometer import Goniometer, as_goniometer
from ._mounts import (
    Mount,
    _cartesian,
    as_mount,
    goniometer_rotation,
    mount,
    parse_indices,
)
from ._sweep_orient import orientation_vars, shortest_path_vars
from .crystal import (
    ELECTRON_SQ,
    PhaseLike,
    composition,
    d_lower_bound,
    linear_attenuation,
    load_phase,
    phase_name,
    phase_reference,
    reflection_table,
    select_reflections,
    sort_reflections,
)
from .options import (
    SCATTERING_PLANES,
    STAGES,
    boolean,
    choice,
    nonnegative_array,
    positive,
    positive_array,
    positive_int,
    value_range,
)
from .units import ANGSTROM, DEGREE, DIMENSIONLESS, HC_KEV_A, KEV, MM, attrs

__all__ = [
    "Mount",
    "mount",
    "goniometer_rotation",
    "parse_indices",
    "sweep",
    "sweep_table",
]

#: energy x reflection points per dask chunk when ``chunks`` is not given
TARGET_CHUNK_POINTS = 500_000


# --------------------------------------------------------------------------------------
# numpy kernels (one energy block at a time)
# --------------------------------------------------------------------------------------
def _sin_theta(energy: np.ndarray, d: np.ndarray) -> np.ndarray:
    s = (HC_KEV_A / energy)[:, None] / (2.0 * d[None, :])
    return np.where(s <= 1.0, s, np.nan)


def _k_theta_block(energy: np.ndarray, d: np.ndarray, what: str) -> np.ndarray:
    s = _sin_theta(energy, d)
    theta = np.degrees(np.arcsin(s))
    return 2.0 * theta if what == "two_theta" else theta


def _intensity_block(energy: np.ndarray, d: np.ndarray, f2m: np.ndarray, lp: bool,
                     tt_range: tuple[float, float]) -> np.ndarray:
    """Relative intensity, the strongest reflection inside ``tt_range`` = 100."""
    s = _sin_theta(energy, d)
    raw = np.broadcast_to(f2m, s.shape).astype(float)
    t = np.arcsin(s)
    if lp:
        raw = raw * (1.0 + np.cos(2 * t) ** 2) / (s**2 * np.cos(t))
    raw = np.where(np.isfinite(s), raw, np.nan)
    tt = 2.0 * np.degrees(t)
    inside = np.isfinite(raw) & (tt >= tt_range[0]) & (tt <= tt_range[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.max(np.where(inside, raw, -np.inf), axis=1, keepdims=True)
        top = np.where(top > 0, top, np.nan)
        out = 100.0 * raw / top
    return np.where(np.isfinite(out), out, np.nan)


def _mu_block(energy: np.ndarray, elements: dict, rho: float) -> np.ndarray:
    return linear_attenuation(elements, rho, energy)


# --------------------------------------------------------------------------------------
# validation and the reflections of a sweep
# --------------------------------------------------------------------------------------
def _energies(energy_kev: Any) -> np.ndarray:
    e = np.atleast_1d(positive_array(energy_kev, "energy_kev"))
    if e.ndim != 1:
        raise ValueError("energy_kev: must be a scalar or a 1-D array of energies")
    if len(np.unique(e)) != e.size:
        raise ValueError("energy_kev: must not contain duplicates")
    return e


class _SweepArgs(NamedTuple):
    energy: np.ndarray
    two_theta_range: tuple[float, float]
    transmission_range: tuple[float, float]
    d_min: float | None
    thickness: np.ndarray | None
    chunks: int | None


def _check_sweep_args(energy_kev, two_theta_range, transmission_range, d_min, stage,
                      scattering_plane, thickness_mm, chunks) -> _SweepArgs:
    energy = _energies(energy_kev)
    tt_rng = (0.0, 180.0) if two_theta_range is None else value_range(
        two_theta_range, "two_theta_range", lo_bound=0.0, hi_bound=180.0)
    tr_rng = value_range(transmission_range, "transmission_range", lo_bound=0.0, hi_bound=1.0)
    if d_min is not None:
        d_min = positive(d_min, "d_min")
    choice(stage, "stage", STAGES)
    choice(scattering_plane, "scattering_plane", SCATTERING_PLANES)
    thick = None
    if thickness_mm is not None:
        thick = nonnegative_array(thickness_mm, "thickness_mm")
        if thick.ndim > 1:
            raise ValueError(f"thickness_mm: must be a scalar or 1-D, got {thickness_mm!r}")
    if chunks is not None:
        integral = isinstance(chunks, float) and chunks.is_integer()
        chunks = positive_int(int(chunks) if integral else chunks, "chunks")
    return _SweepArgs(energy, tt_rng, tr_rng, d_min, thick, chunks)


def _select_reflections(structure, name: str, wanted: Any, d_lo: float, symprec: float,
                        dw) -> xr.Dataset:
    """Reflection table (labels, indices, d, multiplicity, |F|^2 without anomalous terms),
    sorted by d descending."""
    if wanted is None:
        return reflection_table(structure, d_lo=d_lo, name=name, symprec=symprec,
                                debye_waller=dw)
    return sort_reflections(select_reflections(
        structure, wanted, name=name, symprec=symprec, debye_waller=dw, allow_absent=True))


# --------------------------------------------------------------------------------------
# the lazy variables
# --------------------------------------------------------------------------------------
def _f2_block(energy: np.ndarray, f0_sum: np.ndarray, phase_el: np.ndarray,
              elements: list[str]) -> np.ndarray:
    """|F|^2 (Friedel-pair mean) at each energy of the block: (energy, reflection)."""
    return _scattering.f2_from_terms(f0_sum, phase_el,
                                     _scattering.anomalous_terms(elements, energy),
                                     friedel_mean=True)


def _intensity_of_f2(energy: np.ndarray, f2: np.ndarray, mult: np.ndarray, d: np.ndarray,
                     lp: bool, tt_range: tuple[float, float]) -> np.ndarray:
    return _intensity_block(energy[:, 0], d, f2 * mult, lp, tt_range)


def _structure_factor_var(e_da, table: xr.Dataset, structure, anomalous: bool, dw):
    """``structure_factor_sq``: (reflection,) numpy without anomalous terms, else lazy
    (energy, reflection) with Chantler f', f'' at each energy."""
    import dask.array as da

    model = dict(structure_factor_model=_scattering.model_text(anomalous),
                 debye_waller=_scattering.debye_waller_text(dw),
                 debye_waller_b_a2=_scattering.applied_b_text(structure, dw))
    if not anomalous:
        var = table["structure_factor_sq"].variable.copy()
        var.attrs.update(model)
        return var
    hkl = np.stack([table[i].values for i in ("h", "k", "l")], axis=1)
    f0_sum, phase_el, elements = _scattering.scattering_terms(structure, hkl, debye_waller=dw)
    f2 = da.map_blocks(_f2_block, e_da, new_axis=[1],
                       chunks=(e_da.chunks[0], (len(hkl),)), dtype=float,
                       meta=np.empty((0, 0), float), f0_sum=f0_sum, phase_el=phase_el,
                       elements=elements)
    return (("energy", "reflection"), f2, attrs(
        "|F|^2 at each energy: mean of |F(hkl)|^2 and |F(-h-k-l)|^2 (Waasmaier-Kirfel f0 + "
        "Chantler f' + i f'', Debye-Waller)", ELECTRON_SQ, anomalous=1, **model))


def _bragg_vars(e_da, table: xr.Dataset, f2, lorentz_polarization: bool,
                tt_range: tuple[float, float]) -> dict[str, Any]:
    import dask.array as da

    n_refl = table.sizes["reflection"]
    d = table["d_spacing"].values
    mult = table["multiplicity"].values.astype(float)
    meta2 = np.empty((0, 0), dtype=float)
    lp = bool(lorentz_polarization)

    def per_er(func, **kw):
        return da.map_blocks(func, e_da, new_axis=[1], chunks=(e_da.chunks[0], (n_refl,)),
                             dtype=float, meta=meta2, **kw)

    if isinstance(f2, tuple):  # (dims, lazy (energy, reflection) array, attrs): anomalous
        intensity = da.map_blocks(_intensity_of_f2, e_da[:, None], f2[1], mult=mult, d=d,
                                  lp=lp, tt_range=tuple(tt_range), dtype=float, meta=meta2,
                                  chunks=(e_da.chunks[0], (n_refl,)))
    else:
        intensity = per_er(_intensity_block, d=d, f2m=f2.values * mult, lp=lp,
                           tt_range=tuple(tt_range))
    er = ("energy", "reflection")
    return dict(
        structure_factor_sq=f2,
        two_theta=(er, per_er(_k_theta_block, d=d, what="two_theta"), attrs(
            "scattering angle 2theta (NaN: no Bragg reflection)", DEGREE)),
        bragg_angle=(er, per_er(_k_theta_block, d=d, what="theta"),
                     attrs("Bragg angle theta", DEGREE)),
        intensity=(er, intensity,
                   attrs("relative powder intensity |F|^2 x multiplicity [x Lorentz-"
                         "polarization] (strongest inside two_theta_range = 100 at each "
                         "energy)", DIMENSIONLESS, lorentz_polarization=int(lp))),
    )


def _absorption_vars(e_da, two_theta, elements: dict, rho: float, args: _SweepArgs,
                     coords: dict) -> dict[str, Any]:
    """attenuation_length, transmission and reachable (adds the thickness coordinate)."""
    import dask.array as da

    mu = da.map_blocks(_mu_block, e_da, elements=elements, rho=rho, dtype=float,
                       meta=np.empty((0,), float))
    out: dict[str, Any] = dict(attenuation_length=(("energy",), 1.0 / mu, attrs(
        "X-ray attenuation length (1/e), xraydb Elam total", MM)))
    tt_lo, tt_hi = args.two_theta_range
    tr_lo, tr_hi = args.transmission_range
    thick = args.thickness
    er = ("energy", "reflection")
    tt_ok = (two_theta >= tt_lo) & (two_theta <= tt_hi)
    reach, reach_dims = tt_ok, er
    if thick is not None and thick.ndim == 1:
        coords["thickness"] = ("thickness", thick, attrs("sample thickness", MM))
        trans = da.exp(-mu[:, None] * thick[None, :])
        out["transmission"] = (("energy", "thickness"), trans,
                               attrs("transmission through the sample", DIMENSIONLESS))
        tr_ok = (trans >= tr_lo) & (trans <= tr_hi)
        reach = tt_ok[:, :, None] & tr_ok[:, None, :]
        reach_dims = ("energy", "reflection", "thickness")
    elif thick is not None:
        coords["thickness"] = ((), float(thick), attrs("sample thickness", MM))
        trans = da.exp(-mu * float(thick))
        out["transmission"] = (("energy",), trans,
                               attrs("transmission through the sample", DIMENSIONLESS))
        tr_ok = (trans >= tr_lo) & (trans <= tr_hi)
        reach = tt_ok & tr_ok[:, None]
    out["reachable"] = (reach_dims, reach, attrs(
        "2theta inside two_theta_range and transmission inside transmission_range",
        DIMENSIONLESS))
    return out


def _sweep_attrs(structure, phase, label: str, rho: float, args: _SweepArgs,
                 lorentz_polarization: bool, symprec: float, mnt: Mount | None, stage: str,
                 scattering_plane: str) -> dict[str, Any]:
    from . import __version__

    out = dict(
        title="xrdflow geometry sweep",
        xrdflow_version=__version__,
        phase=label,
        phase_reference=phase_reference(phase),
        space_group=structure.get_space_group_info(symprec=symprec)[0],
        lattice_abc_angstrom=", ".join(f"{v:.6f}" for v in structure.lattice.abc),
        lattice_angles_deg=", ".join(f"{v:.4f}" for v in structure.lattice.angles),
        composition=structure.composition.reduced_formula,
        cell_volume_a3=float(structure.lattice.volume),
        electrons_per_cell=float(sum(sp.Z * occ for site in structure
                                     for sp, occ in site.species.items())),
        formula_units_per_cell=int(structure.composition.get_reduced_composition_and_factor()[1]),
        density_g_cm3=rho,
        two_theta_range=list(args.two_theta_range),
        transmission_range=list(args.transmission_range),
        lorentz_polarization=int(bool(lorentz_polarization)),
        lab_frame="beam along +x, z up, y = z cross x; G_lab = Rz(omega) Rx(chi) Ry(phi) U G_cart",
    )
    if mnt is not None:
        out.update(
            mount=mnt.description,
            mount_U=mnt.matrix.ravel().tolist(),
            mount_beam_adjustment_deg=mnt.beam_adjustment_deg,
            stage=stage,
            scattering_plane=scattering_plane if stage != "omega" else "free",
        )
    return out


# --------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------
def sweep(
    phase: PhaseLike,
    *,
    energy_kev: Any = None,
    wavelength_a: Any = None,
    reflections: Any = None,
    thickness_mm: Any = None,
    two_theta_range: tuple[float, float] | None = None,
    transmission_range: tuple[float, float] = (0.05, 1.0),
    mount: Any = None,
    stage: str = "omega",
    scattering_plane: str = "vertical",
    goniometer: Any = None,
    surface_normal: Any = None,
    lens: Any = None,
    lens_distance_mm: float | None = None,
    lens_magnification: float | None = None,
    d_min: float | None = None,
    density: float | None = None,
    lorentz_polarization: bool = True,
    name: str | None = None,
    anomalous: bool = True,
    debye_waller: Any = "cif",
    debye_waller_factors: Mapping[str, float] | None = None,
    symprec: float = 0.01,
    chunks: int | None = None,
) -> xr.Dataset:
    """Diffraction geometry and absorption over energy x reflection [x thickness], lazily.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure.
    energy_kev
        Photon energies (keV), scalar or 1-D array (no duplicates).
    wavelength_a
        Instead of ``energy_kev``: wavelengths (Angstrom); the dims stay ``energy``.
    reflections
        ``None``: every reflection family with ``d >= d_min`` that reaches 2theta <=
        ``two_theta_range[1]`` at the highest energy. Else a list of indices (``"10-10"``,
        ``"Mg 01-10"``, ``(0, 1, 0)``) or a Dataset from :func:`xrdflow.reflections`; given
        indices are kept as given (specific members, see the module docstring).
    thickness_mm
        Sample thickness along the beam (mm): a scalar, or a 1-D array giving a
        ``thickness`` dimension. ``None``: no transmission, ``reachable`` from 2theta only.
    two_theta_range
        The 2theta range (deg) the instrument reaches; default (0, 180).
    transmission_range
        Window of acceptable transmission (fraction) for ``reachable``.
    mount
        Crystal orientation: a :class:`Mount`, ``{"vertical": "[0001]", "beam": "[2-1-10]"}``
        or a 3x3 U matrix. ``None``: no orientation variables.
    stage
        ``"omega"`` (rotation about the vertical axis only), ``"omega-chi"`` (plus the tilt
        chi about the sample's x axis) or ``"omega-phi"`` (tilt phi about its y axis); the
        two-circle stages fix the scattering plane. ``"shortest-path"``: every circle free,
        the scattering plane fixed and the rotation about G chosen for the shortest path
        of the beams through the plate (:mod:`xrdflow._goniometer`).
    scattering_plane
        For the two-circle and shortest-path stages: ``"vertical"`` (diffracted beam up)
        or ``"horizontal"`` (towards +y).
    goniometer
        With ``stage="shortest-path"``: the stage whose angles are returned, a preset
        (``"omega-chi-phi"``, default, or ``"dfxrm"``) or axes (:func:`as_goniometer`).
    surface_normal
        With ``stage="shortest-path"``: the plate normal, a crystal direction or plane
        normal (as in :func:`mount`); default the mount's beam direction at zero angles.
    lens, lens_distance_mm, lens_magnification
        An objective lens (CRL: a TOML file or mapping, :func:`xrdflow.crl_optics`) and
        its imaging condition (the sample-detector distance or the magnification): adds
        the lens' variables over energy (``focal_length_mm``, ``d1_mm``, ``d2_mm``,
        ``magnification``...).
    d_min
        Smallest d (A) considered when ``reflections`` is None; default 0.5 A when the 2theta
        range does not already limit it.
    density
        g/cm^3 for the absorption; default the crystal density.
    lorentz_polarization
        Include the Lorentz-polarization factor in ``intensity`` (as in
        :func:`xrdflow.reflections`).
    name
        Phase label in the reflection labels; default as :func:`xrdflow.reflections`.
    anomalous
        Include Chantler's ``f'(E) + i f''(E)`` (xraydb) in the structure factors at each
        energy (default); False: Waasmaier-Kirfel ``f0`` only, energy independent.
    debye_waller, debye_waller_factors
        Debye-Waller factors: ``"cif"`` (default: the CIF's U / B per site), None, or a
        mapping ``{element or site label: B}`` (A^2), as in :func:`xrdflow.reflections`.
    symprec
        As in :func:`xrdflow.reflections`.
    chunks
        Energies per dask chunk; default about 500,000 energy x reflection points a chunk.

    Returns
    -------
    xarray.Dataset
        Dims ``energy``, ``reflection`` (labels as :func:`xrdflow.reflections`), ``thickness``
        (if an array was given), ``solution`` (2) and ``xyz`` (3) with a mount. Per
        reflection: ``d_spacing``, ``q``, ``multiplicity`` (numpy). Lazy (dask, chunked
        along energy): ``structure_factor_sq`` (electrons^2, single-crystal |F|^2: the
        Friedel-pair mean at each energy; per reflection only, numpy, with
        ``anomalous=False``), ``two_theta``, ``bragg_angle`` (deg), ``intensity`` (the
        powder intensity |F|^2 x multiplicity x Lorentz-polarization, strongest inside
        ``two_theta_range`` = 100 at each energy), ``attenuation_length`` (mm),
        ``transmission``, ``reachable`` (bool); with a mount ``omega`` [, ``chi`` or ``phi``] (deg),
        ``diffracted_direction`` (unit vector, lab frame) and ``eta`` (deg, azimuth of the
        diffracted beam about the incident beam, 0 = +y, 90 = +z); ``rotation`` (dims
        ``..., solution, lab, sample``: ``G_lab = R U G_cart``). With
        ``stage="shortest-path"`` the goniometer's angles (one variable per axis) instead of
        omega/chi/phi, plus ``path_factor``, ``entry_angle``, ``exit_angle`` and, with a
        thickness, ``path_length`` (mm) and ``path_transmission``.

    Examples
    --------
    >>> ds = sweep("Mg", energy_kev=np.linspace(30, 90, 61), thickness_mm=5.0,
    ...            two_theta_range=(2.0, 12.0), mount={"vertical": "[0001]", "beam": "[2-1-10]"})
    >>> float(ds.two_theta.sel(energy=90.0, reflection="Mg 10-10").round(3))
    2.84
    >>> bool(ds.reachable.sel(energy=30.0, reflection="Mg 10-10"))
    True
    """
    import dask.array as da

    energy_kev = _energy_or_wavelength(energy_kev, wavelength_a)
    args = _check_sweep_args(energy_kev, two_theta_range, transmission_range, d_min, stage,
                             scattering_plane, thickness_mm, chunks)
    energy = args.energy
    structure = load_phase(phase)
    label = name or phase_name(phase)
    mnt = as_mount(structure, mount)
    gonio, normal = _stage_args(structure, mnt, stage, goniometer, surface_normal)
    elements, rho = composition(structure, density)
    anomalous = boolean(anomalous, "anomalous")
    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    if anomalous:
        _check_chantler_range(energy)

    # reflections: all that can reach 2theta <= hi at the highest energy
    d_lo = d_lower_bound(HC_KEV_A / energy.max(), d_min=args.d_min,
                         two_theta_max=args.two_theta_range[1])
    table = _select_reflections(structure, label, reflections, d_lo, symprec, dw)
    n_refl = table.sizes["reflection"]
    if n_refl == 0:
        raise ValueError("reflections: no reflection satisfies the ranges given")

    per_chunk = args.chunks or max(1, TARGET_CHUNK_POINTS // n_refl)
    e_da = da.from_array(energy, chunks=per_chunk)
    coords: dict[str, Any] = dict(
        energy=("energy", energy, attrs("photon energy", KEV)),
        wavelength=("energy", HC_KEV_A / energy, attrs("wavelength", ANGSTROM)),
    )
    coords.update({k: table[k].variable for k in table.coords})
    data_vars: dict[str, Any] = {k: table[k].variable for k in table.data_vars}
    f2 = _structure_factor_var(e_da, table, structure, anomalous, dw)
    data_vars.update(_bragg_vars(e_da, table, f2, lorentz_polarization, args.two_theta_range))
    data_vars.update(_absorption_vars(e_da, data_vars["two_theta"][1], elements, rho, args,
                                      coords))
    if mnt is not None and stage == "shortest-path":
        mu = 1.0 / data_vars["attenuation_length"][1]
        data_vars.update(shortest_path_vars(e_da, table, structure, mnt, scattering_plane,
                                            gonio, normal, mu, args.thickness, coords))
    elif mnt is not None:
        data_vars.update(orientation_vars(e_da, table, structure, mnt, stage, scattering_plane,
                                          coords))
    ds = xr.Dataset(data_vars=data_vars, coords=coords)
    if lens is not None:
        ds = _with_lens(ds, lens, energy, lens_distance_mm, lens_magnification)
    elif lens_distance_mm is not None or lens_magnification is not None:
        raise ValueError("lens_distance_mm, lens_magnification: need lens")
    ds.attrs.update(_sweep_attrs(structure, phase, label, rho, args, lorentz_polarization,
                                 symprec, mnt, stage, scattering_plane))
    if gonio is not None:
        ds.attrs.update(goniometer=gonio.describe(), surface_normal_lab_at_zero=normal.tolist())
    if mnt is not None:
        ds.attrs["stage_angles"] = list(gonio.names if gonio is not None else (
            ["omega"] + ([stage.split("-")[1]] if stage != "omega" else [])))
    return ds


def _with_lens(ds: xr.Dataset, lens: Any, energy: np.ndarray, distance: float | None,
               magnification: float | None) -> xr.Dataset:
    from ._crl import crl_optics

    optics = crl_optics(lens, energy_kev=energy, total_distance_mm=distance,
                        magnification=magnification)
    optics = optics.assign_coords(energy=ds.energy)
    clash = set(optics.data_vars) & set(ds.data_vars)
    if clash:  # pragma: no cover - the names are distinct by design
        raise ValueError(f"lens: variables {sorted(clash)} clash with the sweep's")
    out = xr.merge([ds, optics.drop_vars([c for c in optics.coords if c in ds.coords
                                          and c != "energy"])], combine_attrs="override")
    out.attrs["lens"] = str(optics.attrs.get("lens", lens))
    out.attrs["lens_model"] = str(optics.attrs.get("model", ""))
    return out


def _check_chantler_range(energy: np.ndarray) -> None:
    lo, hi = _scattering.CHANTLER_RANGE_KEV
    if energy.min() < lo or energy.max() > hi:
        raise ValueError(f"energy_kev: anomalous scattering factors (Chantler) are tabulated "
                         f"for {lo * 1000:.2f} eV to {hi:g} keV, got {energy.min():g} to "
                         f"{energy.max():g} (anomalous=False to leave them out)")


def _energy_or_wavelength(energy_kev: Any, wavelength_a: Any) -> Any:
    if (energy_kev is None) == (wavelength_a is None):
        raise ValueError("energy_kev, wavelength_a: give exactly one of them")
    if energy_kev is not None:
        return energy_kev
    return HC_KEV_A / positive_array(wavelength_a, "wavelength_a")


def _stage_args(structure, mnt: Mount | None, stage: str, goniometer: Any,
                surface_normal: Any) -> tuple[Goniometer | None, np.ndarray | None]:
    """The goniometer and the plate normal (lab frame at zero angles) of the stage."""
    if stage != "shortest-path":
        for key, value in (("goniometer", goniometer), ("surface_normal", surface_normal)):
            if value is not None:
                raise ValueError(f"{key}: only with stage='shortest-path' (the stage "
                                 f"{stage!r} has its own circles and no plate)")
        return None, None
    if mnt is None:
        raise ValueError("mount: stage='shortest-path' needs the crystal's mount")
    gonio = as_goniometer("omega-chi-phi" if goniometer is None else goniometer)
    if surface_normal is None:
        return gonio, np.array([1.0, 0.0, 0.0])
    n = mnt.matrix @ _cartesian(structure, surface_normal)
    return gonio, n / np.linalg.norm(n)


from ._plan import sweep_table  # noqa: E402  (re-exported: reporting lives in _plan)
