"""Phases, reflections and absorption: pymatgen structures in, labeled data out.

Conventions (as everywhere in xrdflow): d in Angstrom, q in 1/nm (``q = 2*pi/d * 10``),
2theta in degrees, energy in keV, lengths in mm.

Reflections
-----------
:func:`reflections` enumerates the reciprocal lattice of a structure, merges the members
of each symmetry-equivalent family (Laue group = point group of the structure plus
inversion: Friedel's law, which anomalous dispersion breaks in non-centrosymmetric
structures; see ``structure_factor_sq`` below), and returns one entry per *family*.
Families that are not symmetry-equivalent stay separate even when their d-spacings
coincide exactly (cubic 333/511, 300/221 ...); those are reported in the ``coincident``
coordinate. This differs from pymatgen's ``XRDCalculator``, which merges everything that
falls at the same 2theta into one peak: summed over coincident families, our intensities
are pymatgen's but for the atomic scattering factors (checked in the tests).

Intensity model
---------------
Structure factors (:func:`xrdflow._lattice.structure_factor_sq`, numbers in
:mod:`xrdflow._scattering`), ``s = sin(theta)/lambda = 1/(2d)``::

    F(hkl, E) = sum_j occ_j [f0_j(s) + f'_j(E) + i f''_j(E)] exp(-B_j s^2) exp(2 pi i hkl . x_j)

* ``f0``: Waasmaier & Kirfel (Acta Cryst. A51, 416, 1995; ``xraydb.f0``), neutral atoms,
  valid to ``s = 6 1/A``. (pymatgen's small-s fit, used before, is up to 4 % off for heavy
  atoms at ``s = 0.1-0.5 1/A``, a factor 2.2 in ``f`` for W at ``s = 1.84 1/A``.)
* ``f'``, ``f''``: Chantler's tables (xraydb ``f1_chantler`` is ``f'`` alone, not
  ``Z + f'``; ``f2_chantler`` is ``f''``) at the energy (``anomalous=True``, default):
  large near edges (W L3, 10.207 keV: ``f' = -18.6 e``), small elsewhere (W, 30 keV:
  ``f' = -0.58``, ``f'' = 2.75 e``).
* Debye-Waller: ``debye_waller="cif"`` (default) takes each site's isotropic U / B from the
  CIF (``_atom_site_U_iso_or_equiv``, ``B = 8 pi^2 U``, ``_atom_site_B_iso_or_equiv``,
  else U_eq from ``_atom_site_aniso_U_*``; matched to the sites by position through the
  CIF's symmetry operators); none for built-in phases and Structures given as such.
  ``None``: none. A mapping ``{element or site label: B}`` (A^2) sets them
  (``debye_waller_factors``, the old keyword, is its alias).

``structure_factor_sq`` is the mean of ``|F(hkl)|^2`` and ``|F(-h-k-l)|^2`` (the same for
every member of the family, so ``multiplicity * structure_factor_sq`` is the family's sum
of ``|F|^2``); :func:`reflection_table` (no energy) gives it without anomalous terms.
``intensity`` is, relative to the strongest reflection of the phase *among those returned*
(inside ``q_range`` / ``two_theta_range`` / ``d_min``) = 100:

* ``lorentz_polarization=True`` (default, identical to pymatgen):
  ``|F|^2 * multiplicity * (1 + cos^2 2theta) / (sin^2 theta cos theta)``.
  Up to a constant this is the integrated intensity of a powder ring *per unit ring
  length on a sphere around the sample* (Warren's P'), equivalently the integrated peak
  area in 2theta of an azimuthally averaged, solid-angle-corrected pattern (pyFAI
  ``integrate1d``). The polarization term is that of an unpolarised beam; for a linearly
  polarised synchrotron beam the azimuthal *average* is the same, (1 + cos^2 2theta)/2.
  The total power in the ring is ``P' * 2 pi R sin 2theta`` (multiply by ``sin 2theta``).
* ``lorentz_polarization=False``: ``|F|^2 * multiplicity``, without any angle factor,
  for a caller (e.g. a synthetic 2D detector image) that applies its own geometry.

``structure_factor_sq`` (electrons^2, absolute) is returned as well, so both can be rebuilt.

Absorption
----------
:func:`attenuation_length` and :func:`transmission` use xraydb's Elam tables, with the
composition and the density of the structure (overridable, e.g. for a powder's packing).

Layout: the numbers (index parsing, Laue group, structure factors, family enumeration) are
in :mod:`xrdflow._lattice` and :mod:`xrdflow._scattering`, the phases (and CIF U / B) in
:mod:`xrdflow._phases`, absorption in
:mod:`xrdflow._absorption`; this module labels them and re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import _lattice, _scattering
from ._absorption import attenuation_length, composition, linear_attenuation, transmission
from ._phases import BUILTIN_PHASES, PhaseLike, load_phase, phase_name, phase_reference
from .options import boolean, positive, positive_array, value_range
from .units import ANGSTROM, DEGREE, DIMENSIONLESS, HC_KEV_A, INV_NM, attrs

__all__ = [
    "BUILTIN_PHASES",
    "DEFAULT_D_MIN",
    "load_phase",
    "phase_name",
    "phase_reference",
    "d_lower_bound",
    "reflection_table",
    "select_reflections",
    "sort_reflections",
    "with_coincident",
    "lorentz_polarization_factor",
    "reflections",
    "composition",
    "linear_attenuation",
    "attenuation_length",
    "transmission",
    "HC_KEV_A",
    "PhaseLike",
]

#: ``units`` of squared structure factors
ELECTRON_SQ = "electron^2"

#: default lower bound of d (Angstrom) when no range or d_min limits the enumeration
DEFAULT_D_MIN = 0.5


# --------------------------------------------------------------------------------------
# reflection tables (energy independent, labeled)
# --------------------------------------------------------------------------------------
def d_lower_bound(wavelength_a: float, *, d_min: float | None = None, q_max: float | None = None,
                  two_theta_max: float | None = None) -> float:
    """Smallest d (Angstrom) worth enumerating at ``wavelength_a``.

    The largest of Bragg's limit ``lambda / 2`` and the bounds given: ``d_min`` (A), the
    upper end of a q range ``q_max`` (1/nm; ``inf`` gives no bound) and of a 2theta range
    ``two_theta_max`` (deg; 180 gives no bound). When none of them bounds d,
    :data:`DEFAULT_D_MIN` does.

    Examples
    --------
    >>> d_lower_bound(0.5, q_max=40 * math.pi)
    0.5
    >>> d_lower_bound(0.5)  # no bound given: DEFAULT_D_MIN
    0.5
    >>> round(d_lower_bound(0.1423, two_theta_max=10.0), 4)
    0.8164
    """
    bounds = [wavelength_a / 2.0]
    if d_min is not None:
        bounds.append(d_min)
    if q_max is not None and np.isfinite(q_max):
        bounds.append(20.0 * np.pi / q_max)
    if two_theta_max is not None and two_theta_max < 180.0:
        bounds.append(wavelength_a / (2.0 * math.sin(math.radians(two_theta_max) / 2.0)))
    if len(bounds) == 1:
        bounds.append(DEFAULT_D_MIN)
    return max(bounds)


def reflection_table(
    phase: PhaseLike,
    *,
    d_lo: float | None = None,
    hkl: Any = None,
    name: str | None = None,
    symprec: float = 0.01,
    debye_waller: Any = "cif",
    debye_waller_factors: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """The energy-independent reflections of one phase, as labeled data.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen ``Structure``.
    d_lo
        Every symmetry-distinct family with ``d >= d_lo`` (A), by its representative
        indices, sorted as :func:`reflections` sorts (systematic absences dropped).
    hkl
        Instead of ``d_lo``: these integer indices ``(n, 3)``, in the order given, taken as
        they are (any member of a family; no absence check).
    name
        Phase label; default :func:`phase_name`.
    symprec, debye_waller, debye_waller_factors
        As in :func:`reflections`.

    Returns
    -------
    xarray.Dataset
        Dimension ``reflection`` (labels ``"<phase> <hkl>"``); coordinates ``hkl``,
        ``phase``, ``h``, ``k``, ``l``, ``coincident``; variables ``d_spacing`` (A), ``q``
        (1/nm), ``multiplicity``, ``structure_factor_sq`` (electrons^2; Waasmaier-Kirfel
        ``f0`` and Debye-Waller factors, no anomalous terms: energy independent), as in
        :func:`reflections` (which adds what depends on the energy).

    Examples
    --------
    >>> reflection_table("Mg", d_lo=2.4).reflection.values.tolist()
    ['Mg 10-10', 'Mg 0002', 'Mg 10-11']
    >>> reflection_table("Mg", hkl=[(0, 1, 0)]).multiplicity.values.tolist()
    [6]
    """
    if (d_lo is None) == (hkl is None):
        raise ValueError("reflection_table: give either d_lo or hkl")
    structure = load_phase(phase)
    label = phase_name(phase) if name is None else name
    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    if hkl is None:
        fam = _lattice.families(structure, positive(d_lo, "d_lo"), symprec=symprec,
                                debye_waller=dw)
        table = _labeled_table(structure, label, fam["hkl"], fam["d"], fam["multiplicity"],
                               fam["f2"], dw)
        return sort_reflections(table)
    idx = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    d = 1.0 / np.linalg.norm(idx @ recip, axis=1)
    mult = _lattice.multiplicity(structure, idx, symprec)
    f2 = _lattice.structure_factor_sq(structure, idx, debye_waller=dw)
    return with_coincident(_labeled_table(structure, label, idx, d, mult, f2, dw))


def _f2_attrs(dw, energy_kev: float | None = None, anomalous: bool = False) -> dict[str, Any]:
    at_e = energy_kev is not None and anomalous
    what = ("|F|^2 of the family at energy_kev: mean of |F(hkl)|^2 and |F(-h-k-l)|^2 "
            "(Waasmaier-Kirfel f0 + Chantler f' + i f'', Debye-Waller)" if at_e else
            "|F|^2 of the family (Waasmaier-Kirfel f0, Debye-Waller; no anomalous terms)")
    extra = {} if energy_kev is None else dict(energy_kev=float(energy_kev))
    return attrs(what, ELECTRON_SQ, anomalous=int(at_e),
                 debye_waller=_scattering.debye_waller_text(dw), **extra)


def _f2_at_energy(table: xr.Dataset, structure, energy: float, *, anomalous: bool,
                  dw) -> xr.Dataset:
    """``table`` with ``structure_factor_sq`` at ``energy`` (anomalous terms if asked)."""
    table = table.copy()
    if anomalous:
        hkl = np.stack([table["h"].values, table["k"].values, table["l"].values], axis=1)
        table["structure_factor_sq"] = ("reflection", _lattice.structure_factor_sq(
            structure, hkl, energy_kev=energy, debye_waller=dw, friedel_mean=True))
    table["structure_factor_sq"].attrs = _f2_attrs(dw, energy, anomalous)
    return table


def _labeled_table(structure, label: str, hkl: np.ndarray, d: np.ndarray, mult: np.ndarray,
                   f2: np.ndarray, dw) -> xr.Dataset:
    hexagonal = structure.lattice.is_hexagonal()
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    hkl_str = [_lattice.hkl_label(r, hexagonal) for r in hkl]
    return xr.Dataset(
        data_vars=dict(
            d_spacing=("reflection", d, attrs("d-spacing", ANGSTROM)),
            q=("reflection", 20.0 * np.pi / d if len(d) else d,
               attrs("scattering vector length q = 2 pi/d", INV_NM)),
            multiplicity=("reflection", np.asarray(mult, dtype=np.int64),
                          attrs("multiplicity of the reflection family", DIMENSIONLESS)),
            structure_factor_sq=("reflection", np.asarray(f2, dtype=float), _f2_attrs(dw)),
        ),
        coords=dict(
            reflection=("reflection", np.array([f"{label} {s}" for s in hkl_str], dtype=str),
                        attrs("reflection label", "")),
            hkl=("reflection", np.array(hkl_str, dtype=str),
                 attrs("Miller (Miller-Bravais for hexagonal) indices", "")),
            phase=("reflection", np.full(len(d), label), attrs("phase", "")),
            h=("reflection", hkl[:, 0], attrs("Miller index h", DIMENSIONLESS)),
            k=("reflection", hkl[:, 1], attrs("Miller index k", DIMENSIONLESS)),
            l=("reflection", hkl[:, 2], attrs("Miller index l", DIMENSIONLESS)),
        ),
    )


def with_coincident(table: xr.Dataset) -> xr.Dataset:
    """``table`` with the ``coincident`` coordinate: other reflections at the same d.

    Families that are not symmetry-equivalent but share a d-spacing (cubic 333/511) are
    listed by label, comma-separated, "" if none.
    """
    labels = np.asarray(table["reflection"].values).astype(str)
    same = _lattice.coincident_labels(labels, np.asarray(table["d_spacing"].values, dtype=float))
    return table.assign_coords(coincident=("reflection", same, attrs(
        "other reflections at the same d (not symmetry-equivalent)", units="")))


def sort_reflections(table: xr.Dataset, phases: Sequence[str] | None = None) -> xr.Dataset:
    """Reflections sorted by d descending; ties by phase (in the order of ``phases``, default
    of appearance), then larger indices first; ``coincident`` recomputed.

    Examples
    --------
    >>> table = reflection_table("Al", hkl=[(1, 1, 1), (2, 0, 0), (0, 0, 2)])
    >>> sort_reflections(table).reflection.values.tolist()
    ['Al 111', 'Al 200', 'Al 002']
    """
    labels = np.asarray(table["phase"].values).astype(str).tolist()
    names = list(phases) if phases is not None else list(dict.fromkeys(labels))
    phase_idx = np.array([names.index(p) for p in labels], dtype=np.int64)
    d = np.asarray(table["d_spacing"].values, dtype=float)
    order = np.lexsort((-table["l"].values, -table["k"].values, -table["h"].values, phase_idx,
                        -np.round(d, 10)))
    return with_coincident(table.isel(reflection=order))


def select_reflections(
    phase: PhaseLike,
    wanted: Any,
    *,
    energy_kev: float | None = None,
    name: str | None = None,
    lorentz_polarization: bool = True,
    symprec: float = 0.01,
    anomalous: bool = True,
    debye_waller: Any = "cif",
    debye_waller_factors: Mapping[str, float] | None = None,
    allow_absent: bool = False,
) -> xr.Dataset:
    """Reflections of one phase chosen by their indices, in the order given.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen ``Structure``.
    wanted
        Indices as text (``"10-10"``, ``"(1 0 -1 0)"``, ``"111"``), as a label of
        :func:`reflections` (``"Mg 10-10"``), as integers (``(1, 0, 0)``); a list of these;
        or a Dataset with ``h``, ``k``, ``l`` (from :func:`reflections`). Each is taken as
        given: the family's representative (as :func:`reflections` labels it) or any other
        member (``"01-10"``: same d and multiplicity, its own orientation).
    energy_kev
        If given, ``two_theta`` and ``intensity`` (strongest of the selection = 100) at
        this energy are added, and ``structure_factor_sq`` is at this energy, as in
        :func:`reflections`.
    name
        Phase label; default :func:`phase_name`.
    lorentz_polarization, symprec, anomalous, debye_waller, debye_waller_factors
        As in :func:`reflections` (``anomalous`` only matters with an energy).
    allow_absent
        Keep systematically absent reflections (``|F|^2 = 0``); by default they raise.

    Returns
    -------
    xarray.Dataset
        As :func:`reflection_table` (plus ``two_theta``, ``intensity`` with an energy).

    Raises
    ------
    ValueError
        Message starting ``"reflections:"``: unreadable indices, a direction (``"[100]"``),
        a reflection listed twice, an absent reflection, an empty selection.

    Examples
    --------
    >>> ds = select_reflections("Mg", ["10-11", "Mg 0002"], energy_kev=87.1)
    >>> ds.reflection.values.tolist()
    ['Mg 10-11', 'Mg 0002']
    >>> ds.two_theta.round(3).values.tolist()
    [3.326, 3.131]
    >>> select_reflections("Mg", "0001")
    Traceback (most recent call last):
    ...
    ValueError: reflections: '0001' is not a reflection of Mg (systematically absent)
    """
    label = phase_name(phase) if name is None else name
    hkl, given = _wanted_indices(wanted, label)
    structure = load_phase(phase)
    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    anomalous = boolean(anomalous, "anomalous")
    table = reflection_table(structure, hkl=hkl, name=label, symprec=symprec, debye_waller=dw)
    labels = table["reflection"].values.tolist()
    if len(set(labels)) != len(labels):
        raise ValueError("reflections: the same reflection is listed twice")
    if not allow_absent:
        absent = _lattice.absent(structure, hkl, debye_waller=dw)
        if absent.any():
            raise ValueError(f"reflections: {given[int(np.argmax(absent))]!r} is not a reflection "
                             f"of {label} (systematically absent)")
    if energy_kev is None:
        return table
    energy = _one_energy(energy_kev)
    table = _f2_at_energy(table, structure, energy, anomalous=anomalous, dw=dw)
    return _at_energy(table, HC_KEV_A / energy, lorentz_polarization=lorentz_polarization)


def _wanted_indices(wanted: Any, label: str) -> tuple[np.ndarray, list]:
    """(n, 3) integer indices of the wanted reflections and the items as given."""
    if isinstance(wanted, xr.Dataset):
        hkl = np.stack([wanted.h.values, wanted.k.values, wanted.l.values], axis=1)
        given = [tuple(int(v) for v in row) for row in hkl]
    else:
        if isinstance(wanted, str) or (
                isinstance(wanted, Sequence) and wanted and isinstance(wanted[0], int)):
            wanted = [wanted]
        rows, given = [], list(wanted)
        for item in given:
            text = item
            if isinstance(item, str) and item.startswith(label + " "):
                text = item[len(label) + 1:]
            try:
                kind, idx = _lattice.parse_indices(text)
                if kind != "hkl":
                    raise ValueError(f"{item!r} is a direction, not a reflection")
                rows.append(_lattice.three_indices("hkl", idx, item).astype(np.int64))
            except ValueError as exc:
                raise ValueError(f"reflections: {exc}") from None
        hkl = np.array(rows, dtype=np.int64).reshape(-1, 3)
    if len(hkl) == 0:
        raise ValueError("reflections: empty selection")
    return np.asarray(hkl, dtype=np.int64), given


def lorentz_polarization_factor(two_theta_deg: Any) -> np.ndarray:
    """pymatgen's unpolarised Lorentz-polarization factor ``(1+cos^2 2t)/(sin^2 t cos t)``.

    Examples
    --------
    >>> round(float(lorentz_polarization_factor(90.0)), 12)
    2.828427124746
    """
    t = np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0
    return (1.0 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))


# --------------------------------------------------------------------------------------
# reflections at one energy
# --------------------------------------------------------------------------------------
def _one_energy(energy_kev: Any) -> float:
    if np.ndim(energy_kev) != 0:
        raise ValueError("energy_kev: must be one energy (use xrdflow.sweep for several)")
    return float(positive_array(energy_kev, "energy_kev"))


def _at_energy(table: xr.Dataset, wavelength: float, *, lorentz_polarization: bool) -> xr.Dataset:
    """``table`` (one phase, the reflections to return) at one wavelength, with
    ``two_theta`` and ``intensity`` normalised to the strongest of *these* reflections (the
    caller has cut them to the requested q / 2theta / d range first)."""
    d = table["d_spacing"].values
    tt = np.degrees(2.0 * np.arcsin(np.clip(wavelength / (2.0 * d), 0.0, 1.0)))
    raw = table["structure_factor_sq"].values * table["multiplicity"].values
    if lorentz_polarization:
        raw = raw * lorentz_polarization_factor(tt)
    rel = 100.0 * (raw / raw.max()) if len(raw) else raw  # the strongest: exactly 100
    out = table.assign(two_theta=("reflection", tt, attrs("scattering angle 2theta", DEGREE)))
    out["intensity"] = ("reflection", rel, attrs(
        "relative intensity (strongest returned reflection = 100 per phase)", DIMENSIONLESS,
        lorentz_polarization=int(bool(lorentz_polarization)),
        description=(
            "|F|^2 * multiplicity * (1 + cos^2 2theta)/(sin^2 theta cos theta) "
            "(pymatgen's unpolarised Lorentz-polarization; integrated intensity per "
            "unit ring length on a sphere around the sample)"
            if lorentz_polarization else
            "|F|^2 * multiplicity (no Lorentz-polarization factor)")))
    return out


def _in_ranges(table: xr.Dataset, wavelength: float, d_lo: float, q_rng, tt_rng) -> np.ndarray:
    d = table["d_spacing"].values
    q = table["q"].values
    tt = np.degrees(2.0 * np.arcsin(np.clip(wavelength / (2.0 * d), 0.0, 1.0)))
    keep = d >= d_lo * (1 - 1e-12)
    if q_rng is not None:
        keep &= (q >= q_rng[0]) & (q <= q_rng[1])
    if tt_rng is not None:
        keep &= (tt >= tt_rng[0]) & (tt <= tt_rng[1])
    return keep


def _phase_names(phases: list, name: str | Sequence[str] | None) -> list[str]:
    if not phases:
        raise ValueError("phase: empty list of phases")
    if name is None:
        names = [phase_name(p) for p in phases]
    else:
        names = [name] if isinstance(name, str) else list(name)
        if len(names) != len(phases):
            raise ValueError(f"name: {len(names)} names for {len(phases)} phases")
    if len(set(names)) != len(names):
        raise ValueError(f"name: phase labels must be unique, got {names} (pass name=[...])")
    return names


def reflections(
    phase: PhaseLike | Sequence[PhaseLike],
    *,
    energy_kev: float,
    q_range: tuple[float, float] | None = None,
    two_theta_range: tuple[float, float] | None = None,
    d_min: float | None = None,
    lorentz_polarization: bool = True,
    name: str | Sequence[str] | None = None,
    anomalous: bool = True,
    debye_waller: Any = "cif",
    debye_waller_factors: Mapping[str, float] | None = None,
    symprec: float = 0.01,
) -> xr.Dataset:
    """Powder reflections of one or more phases at one energy, as labeled data.

    Parameters
    ----------
    phase
        Built-in phase name (see :data:`BUILTIN_PHASES`), CIF path or pymatgen
        ``Structure``; or a list of them (reflections are then concatenated, each phase's
        intensities normalised to its own strongest reflection = 100).
    energy_kev
        Photon energy in keV (also for the anomalous scattering factors).
    q_range
        Keep reflections with ``q_range[0] <= q <= q_range[1]`` (1/nm).
    two_theta_range
        Keep reflections with 2theta in this range (degrees, within [0, 180]).
    d_min
        Keep reflections with ``d >= d_min`` (Angstrom). When neither ``d_min`` nor an
        upper q/2theta bound is given, ``d_min`` defaults to 0.5 A (q = 125.7 1/nm).
    lorentz_polarization
        Include pymatgen's Lorentz-polarization factor in ``intensity`` (see the module
        docstring for what each choice means physically).
    name
        Label(s) of the phase(s) in the ``reflection`` labels and ``phase`` coordinate;
        default: the built-in name, else the reduced formula.
    anomalous
        Include Chantler's ``f'(E) + i f''(E)`` at ``energy_kev`` in the structure factors
        (default); False: Waasmaier-Kirfel ``f0`` only.
    debye_waller
        Isotropic Debye-Waller factors ``exp(-B s^2)``: ``"cif"`` (default) the CIF's U / B
        per site when the phase is a CIF path (none for built-in phases and Structures),
        None for none, or ``{element symbol or site label: B}`` (A^2; a label wins over an
        element; one mapping may hold several phases' keys). ``debye_waller_factors``, the
        old keyword (``{element: B}``), is an alias of such a mapping.
    symprec
        Symmetry tolerance (A) used to find the Laue group that merges families.

    Returns
    -------
    xarray.Dataset
        Dimension ``reflection`` with unique labels ``"<phase> <hkl>"`` (e.g. ``"Mg 10-10"``,
        Miller-Bravais indices for hexagonal cells), sorted by d descending. Coordinates
        ``hkl`` (str), ``phase`` (str), ``h``, ``k``, ``l`` (int; for hexagonal cells
        ``i = -(h + k)`` is implied), ``coincident`` (str, labels of other families with
        the same d, comma-separated, "" if none). Data variables ``d_spacing`` (A), ``q``
        (1/nm), ``two_theta`` (deg), ``multiplicity`` (int), ``intensity`` (relative,
        strongest of the returned reflections 100 per phase), ``structure_factor_sq``
        (electrons^2, mean of the Friedel pair at ``energy_kev``). Attrs record the inputs,
        ``anomalous``, ``debye_waller`` and the B factors applied (``debye_waller_b_a2``).

    Raises
    ------
    ValueError
        For a non-positive energy, an inverted or out-of-bounds range, an unknown phase.

    Examples
    --------
    >>> ds = reflections("Mg", energy_kev=87.1, q_range=(20, 26))
    >>> ds.reflection.values.tolist()
    ['Mg 10-10', 'Mg 0002', 'Mg 10-11']
    >>> ds.q.round(3).values.tolist()
    [22.606, 24.116, 25.621]
    >>> round(float(ds.two_theta.sel(reflection="Mg 10-10")), 3)
    2.935
    """
    energy = _one_energy(energy_kev)
    wavelength = HC_KEV_A / energy
    q_rng = None if q_range is None else value_range(q_range, "q_range", lo_bound=0.0,
                                                       allow_inf=True)
    tt_rng = None if two_theta_range is None else value_range(
        two_theta_range, "two_theta_range", lo_bound=0.0, hi_bound=180.0)
    if d_min is not None:
        d_min = positive(d_min, "d_min")
    symprec = positive(symprec, "symprec")
    anomalous = boolean(anomalous, "anomalous")
    dw = _scattering.check_debye_waller(debye_waller, debye_waller_factors)
    phases = list(phase) if isinstance(phase, (list, tuple)) else [phase]
    names = _phase_names(phases, name)

    d_lo = d_lower_bound(wavelength, d_min=d_min, q_max=None if q_rng is None else q_rng[1],
                         two_theta_max=None if tt_rng is None else tt_rng[1])
    structures = [load_phase(ph) for ph in phases]
    parts = []
    for structure, nm in zip(structures, names):
        table = reflection_table(structure, d_lo=d_lo, name=nm, symprec=symprec, debye_waller=dw)
        keep = _in_ranges(table, wavelength, d_lo, q_rng, tt_rng)
        table = _f2_at_energy(table.isel(reflection=np.flatnonzero(keep)), structure, energy,
                              anomalous=anomalous, dw=dw)
        parts.append(_at_energy(table, wavelength, lorentz_polarization=lorentz_polarization))
    ds = parts[0] if len(parts) == 1 else xr.concat(
        parts, dim="reflection", data_vars="all", coords="all", join="outer",
        combine_attrs="override")
    ds = sort_reflections(ds, names)[["d_spacing", "q", "two_theta", "multiplicity", "intensity",
                                      "structure_factor_sq"]]
    ds.attrs.update(_reflections_attrs(phases, names, structures, energy, wavelength, q_rng, tt_rng,
                                       d_lo, lorentz_polarization, anomalous, dw, symprec))
    return ds


def _reflections_attrs(phases, names, structures, energy, wavelength, q_rng, tt_rng, d_lo,
                       lorentz_polarization, anomalous, dw, symprec) -> dict[str, Any]:
    from . import __version__

    return dict(
        title="xrdflow reflections",
        xrdflow_version=__version__,
        phase=", ".join(names),
        phase_reference=" | ".join(phase_reference(p) for p in phases),
        space_group=", ".join(s.get_space_group_info(symprec=symprec)[0] for s in structures),
        lattice_abc_angstrom=", ".join(
            "(" + ", ".join(f"{v:.6f}" for v in s.lattice.abc) + ")" for s in structures),
        lattice_angles_deg=", ".join(
            "(" + ", ".join(f"{v:.4f}" for v in s.lattice.angles) + ")" for s in structures),
        energy_kev=energy,
        wavelength_a=wavelength,
        q_range=str(q_rng),
        two_theta_range=str(tt_rng),
        d_min=d_lo,
        lorentz_polarization=int(bool(lorentz_polarization)),
        anomalous=int(bool(anomalous)),
        debye_waller=_scattering.debye_waller_text(dw),
        debye_waller_b_a2=" | ".join(_scattering.applied_b_text(s, dw) for s in structures),
        structure_factors=_scattering.model_text(anomalous),
    )
