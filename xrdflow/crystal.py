"""Phases, reflections and absorption: pymatgen structures in, labeled data out.

Conventions (as everywhere in xrdflow): d in Angstrom, q in 1/nm (``q = 2*pi/d * 10``),
2theta in degrees, energy in keV, lengths in mm.

Reflections
-----------
:func:`reflections` enumerates the reciprocal lattice of a structure, merges the members
of each symmetry-equivalent family (Laue group = point group of the structure plus
inversion, i.e. Friedel's law, since anomalous dispersion is ignored), and returns one
entry per *family*. Families that are not symmetry-equivalent stay separate even when their
d-spacings coincide exactly (cubic 333/511, 300/221 ...); those are reported in the
``coincident`` coordinate. This differs from pymatgen's ``XRDCalculator``, which merges
everything that falls at the same 2theta into one peak: summed over coincident families,
our intensities equal pymatgen's (checked in the tests).

Intensity model
---------------
Structure factors use pymatgen's atomic scattering factors (the same coefficients and
formula as :class:`pymatgen.analysis.diffraction.xrd.XRDCalculator`), optionally with
isotropic Debye-Waller factors ``exp(-B s^2)``, ``s = sin(theta)/lambda``::

    F(hkl) = sum_j occ_j f_j(s) exp(-B_j s^2) exp(2 pi i hkl . x_j)

``intensity`` is then, relative to the strongest reflection of the phase (= 100):

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

``structure_factor_sq`` (|F|^2 of one member of the family, electrons^2, absolute) is
returned as well, so both can be rebuilt.

Absorption
----------
:func:`attenuation_length` and :func:`transmission` use xraydb's Elam tables, with the
composition and the density of the structure (overridable, e.g. for a powder's packing).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np
import xarray as xr

from .units import HC_KEV_A, _positive

__all__ = [
    "BUILTIN_PHASES",
    "load_phase",
    "phase_name",
    "reflections",
    "attenuation_length",
    "transmission",
]

# Built-in phases: (space group, lattice kind, lattice parameters in Angstrom, species,
# fractional coordinates of the asymmetric unit, reference). Room temperature unless noted.
_BUILTIN: dict[str, dict[str, Any]] = {
    "Mg": dict(
        spacegroup="P6_3/mmc", lattice=("hexagonal", 3.2094, 5.2108),
        species=["Mg"], coords=[[1 / 3, 2 / 3, 0.25]],
        reference="hcp Mg, a = 3.2094 A, c = 5.2108 A, room temperature (C. B. Walker and "
                  "M. Marezio, Acta Metall. 7, 769 (1959), as tabulated by WebElements)",
    ),
    "Al": dict(
        spacegroup="Fm-3m", lattice=("cubic", 4.0494), species=["Al"], coords=[[0, 0, 0]],
        reference="fcc Al, a = 4.0494 A, 25 C (ICDD PDF 04-0787, Swanson & Tatge, "
                  "NBS Circular 539 vol. I, 1953)",
    ),
    "Fe-bcc": dict(
        spacegroup="Im-3m", lattice=("cubic", 2.8665), species=["Fe"], coords=[[0, 0, 0]],
        reference="alpha-Fe (ferrite), a = 2.8665 A, room temperature (ICDD PDF 06-0696: "
                  "2.8664 A; Swanson et al., NBS Circular 539 vol. IV, 1955)",
    ),
    "Fe-fcc": dict(
        spacegroup="Fm-3m", lattice=("cubic", 3.5911), species=["Fe"], coords=[[0, 0, 0]],
        reference="gamma-Fe (austenite), a = 3.5911 A: commonly used room-temperature value "
                  "(pure gamma-Fe is not stable there; austenitic steels are 3.58-3.60 A)",
    ),
    "Ti-hcp": dict(
        spacegroup="P6_3/mmc", lattice=("hexagonal", 2.9508, 4.6855),
        species=["Ti"], coords=[[1 / 3, 2 / 3, 0.25]],
        reference="alpha-Ti, a = 2.9508 A, c = 4.6855 A: commonly tabulated room-temperature "
                  "values for commercially pure Ti",
    ),
    "Ti-bcc": dict(
        spacegroup="Im-3m", lattice=("cubic", 3.3065), species=["Ti"], coords=[[0, 0, 0]],
        reference="beta-Ti, a = 3.3065 A, pure Ti above the 882 C transus (commonly tabulated); "
                  "retained beta in Ti alloys at room temperature is 3.22-3.28 A",
    ),
    "LaB6": dict(
        spacegroup="Pm-3m", lattice=("cubic", 4.156826), species=["La", "B"],
        coords=[[0, 0, 0], [0.1992, 0.5, 0.5]],
        reference="LaB6, a = 4.156826 A at 22.5 C (NIST SRM 660c certificate); "
                  "B at 6f (x, 1/2, 1/2), x = 0.1992 (literature values 0.197-0.200; affects "
                  "intensities only)",
    ),
    "CeO2": dict(
        spacegroup="Fm-3m", lattice=("cubic", 5.411651), species=["Ce", "O"],
        coords=[[0, 0, 0], [0.25, 0.25, 0.25]],
        reference="CeO2 (fluorite), a = 5.411651 A at 22.5 C (NIST SRM 674b certificate)",
    ),
    "Si": dict(
        spacegroup="Fd-3m", lattice=("cubic", 5.431020511), species=["Si"],
        coords=[[0, 0, 0]],
        reference="Si (diamond), a = 5.431020511 A at 22.5 C in vacuum (CODATA 2018 "
                  "lattice parameter of silicon)",
    ),
}

#: names accepted by :func:`load_phase` (and everything taking ``phase``)
BUILTIN_PHASES: tuple[str, ...] = tuple(_BUILTIN)

#: default lower bound of d (Angstrom) when no range or d_min limits the enumeration
DEFAULT_D_MIN = 0.5

PhaseLike = Union[str, "os.PathLike[str]", Any]  # name, CIF path or pymatgen Structure


# --------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _builtin_structure(name: str):
    from pymatgen.core import Lattice, Structure

    spec = _BUILTIN[name]
    kind, *params = spec["lattice"]
    lattice = Lattice.hexagonal(*params) if kind == "hexagonal" else Lattice.cubic(*params)
    return Structure.from_spacegroup(spec["spacegroup"], lattice, spec["species"], spec["coords"])


def load_phase(phase: PhaseLike):
    """A :class:`pymatgen.core.Structure` from a built-in name, a CIF path or a Structure.

    Parameters
    ----------
    phase
        One of :data:`BUILTIN_PHASES` (``"Mg"``, ``"Al"``, ``"Fe-bcc"``, ``"Fe-fcc"``,
        ``"Ti-hcp"``, ``"Ti-bcc"``, ``"LaB6"``, ``"CeO2"``, ``"Si"``), a path to a CIF
        file, or a pymatgen ``Structure`` (returned as is).

    Examples
    --------
    >>> load_phase("Mg").lattice.abc
    (3.2094, 3.2094, 5.2108)
    """
    from pymatgen.core import Structure

    if isinstance(phase, Structure):
        return phase
    if isinstance(phase, str) and phase in _BUILTIN:
        return _builtin_structure(phase).copy()
    if isinstance(phase, (str, os.PathLike)):
        path = Path(phase)
        if path.suffix.lower() == ".cif" or path.exists():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: CIF file not found (phase)")
            structs = Structure.from_file(str(path))
            return structs
        raise ValueError(
            f"phase: {phase!r} is neither a built-in phase ({', '.join(BUILTIN_PHASES)}) "
            "nor an existing CIF file"
        )
    raise ValueError(
        f"phase must be a built-in name, a CIF path or a pymatgen Structure, "
        f"got {type(phase).__name__}"
    )


def phase_name(phase: PhaseLike) -> str:
    """The label used for a phase: the built-in name, else the reduced formula.

    Examples
    --------
    >>> phase_name("Fe-bcc")
    'Fe-bcc'
    """
    if isinstance(phase, str) and phase in _BUILTIN:
        return phase
    return load_phase(phase).composition.reduced_formula


def _reference(phase: PhaseLike) -> str:
    if isinstance(phase, str) and phase in _BUILTIN:
        return _BUILTIN[phase]["reference"]
    if isinstance(phase, (str, os.PathLike)):
        return f"CIF file {os.fspath(phase)}"
    return "user-supplied pymatgen Structure"


# --------------------------------------------------------------------------------------
# reflection families (energy independent)
# --------------------------------------------------------------------------------------
def _hkl_label(hkl: Sequence[int], hexagonal: bool) -> str:
    h, k, l = (int(v) for v in hkl)
    idx = (h, k, -(h + k), l) if hexagonal else (h, k, l)
    if all(abs(v) <= 9 for v in idx):
        return "".join(str(v) for v in idx)
    return " ".join(str(v) for v in idx)  # unambiguous for two-digit indices


def _laue_rotations(structure, symprec: float) -> np.ndarray:
    """Integer rotation matrices (fractional basis of the input cell) of the Laue group."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-handling notice
            ops = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(
                cartesian=False)
        rots = {tuple(np.rint(op.rotation_matrix).astype(int).ravel()) for op in ops}
    except Exception:  # spglib failure on a pathological cell: no symmetry but identity
        rots = {tuple(np.eye(3, dtype=int).ravel())}
    rots |= {tuple(-np.asarray(r)) for r in rots}  # Friedel's law
    return np.array(sorted(rots), dtype=np.int64).reshape(-1, 3, 3)


def _structure_factor_sq(structure, hkl: np.ndarray,
                         debye_waller_factors: Mapping[str, float] | None = None) -> np.ndarray:
    """|F(hkl)|^2 (electrons^2) for integer indices ``hkl`` (n, 3), pymatgen's form factors."""
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

    hkl = np.asarray(hkl, dtype=float).reshape(-1, 3)
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    g = np.linalg.norm(hkl @ recip, axis=1)
    s2 = (g / 2.0) ** 2
    dw = dict(debye_waller_factors or {})
    f = np.zeros(len(hkl), dtype=np.complex128)
    for site in structure:
        phase = np.exp(2j * np.pi * (hkl @ site.frac_coords))
        for sp, occ in site.species.items():
            symbol = sp.symbol
            try:
                coeff = np.asarray(ATOMIC_SCATTERING_PARAMS[symbol], dtype=float)
            except KeyError:
                raise ValueError(f"phase: no X-ray scattering factors for element {symbol}") from None
            fs = sp.Z - 41.78214 * s2 * np.sum(
                coeff[:, 0] * np.exp(-coeff[:, 1] * s2[:, None]), axis=1)
            if dw.get(symbol):
                fs = fs * np.exp(-dw[symbol] * s2)
            f += occ * fs * phase
    return (f * f.conj()).real


def _multiplicity(structure, hkl: np.ndarray, symprec: float = 0.01) -> np.ndarray:
    """Number of distinct members of the Laue-group orbit of each ``hkl`` (n, 3)."""
    rots = _laue_rotations(structure, symprec)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    orbit = np.einsum("mji,nj->nmi", rots, hkl)
    return np.array([len(np.unique(o, axis=0)) for o in orbit], dtype=np.int64)


def _families(structure, d_lo: float, *, symprec: float = 0.01,
              debye_waller_factors: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """All symmetry-distinct reflection families with d >= d_lo.

    Returns arrays: ``hkl`` (n, 3) representative indices, ``d`` (n,), ``multiplicity``
    (n,), ``f2`` (n,) = |F|^2 of one member (electrons^2). Extinct families are dropped.
    """
    lattice = structure.lattice
    recip = lattice.reciprocal_lattice_crystallographic.matrix  # rows: a*, b*, c* (1/A)
    g_max = 1.0 / d_lo
    hmax = [int(math.floor(g_max * n + 1e-9)) for n in lattice.abc]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in hmax], indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
    g = np.linalg.norm(hkl @ recip, axis=1)
    keep = (g > 0) & (g <= g_max * (1 + 1e-12))
    hkl, g = hkl[keep], g[keep]
    if len(hkl) == 0:
        empty = np.zeros(0)
        return dict(hkl=np.zeros((0, 3), np.int64), d=empty, multiplicity=empty.astype(np.int64),
                    f2=empty)

    f2 = _structure_factor_sq(structure, hkl, debye_waller_factors)

    # canonical representative of each family under the Laue group: fewest negative
    # indices, then the lexicographically largest (100 not -100, 311 not 131, 11-20 not 2-1-10)
    rots = _laue_rotations(structure, symprec)
    orbit = np.einsum("mji,nj->nmi", rots, hkl)  # h' = R^T h, shape (n, m, 3)
    span = int(np.abs(orbit).max()) + 1
    base = 2 * span + 1
    shifted = orbit + span
    lex = (shifted[..., 0] * base + shifted[..., 1]) * base + shifted[..., 2]
    nneg = (orbit < 0).sum(axis=2)
    score = -nneg * base**3 + lex
    rep = orbit[np.arange(len(hkl)), np.argmax(score, axis=1)]
    fam, inverse, counts = np.unique(rep, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    # d and |F|^2 are invariant within a family: take the member that is the representative
    first = np.zeros(len(fam), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(hkl))[::-1]
    d = 1.0 / g[first]
    f2_fam = f2[first]
    # drop systematic absences (|F|^2 numerically zero)
    present = f2_fam > 1e-8 * f2_fam.max()
    return dict(hkl=fam[present], d=d[present], multiplicity=counts[present].astype(np.int64),
                f2=f2_fam[present])


def _check_range(rng: Any, name: str, lo_bound: float = 0.0, hi_bound: float = np.inf):
    if rng is None:
        return None
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {rng!r}") from None
    if not (np.isfinite(lo) and (np.isfinite(hi) or hi == np.inf)):
        raise ValueError(f"{name} must be finite, got {rng!r}")
    if lo < lo_bound or hi > hi_bound:
        raise ValueError(f"{name} must lie within [{lo_bound}, {hi_bound}], got {rng!r}")
    if not lo < hi:
        raise ValueError(f"{name} must be (low, high) with low < high, got {rng!r}")
    return lo, hi


def lorentz_polarization_factor(two_theta_deg: Any) -> np.ndarray:
    """pymatgen's unpolarised Lorentz-polarization factor ``(1+cos^2 2t)/(sin^2 t cos t)``.

    Examples
    --------
    >>> round(float(lorentz_polarization_factor(90.0)), 12)
    2.828427124746
    """
    t = np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0
    return (1.0 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))


def _coincident(labels: np.ndarray, d: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    """For each reflection, the labels of others with the same d (within rtol), comma-joined."""
    out = np.full(len(d), "", dtype=object)
    order = np.argsort(-d, kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and abs(d[order[j]] - d[order[i]]) <= rtol * d[order[i]]:
            j += 1
        if j - i > 1:
            group = [order[n] for n in range(i, j)]
            for a in group:
                out[a] = ",".join(labels[b] for b in group if b != a)
        i = j
    return out.astype(str)


def reflections(
    phase: PhaseLike | Sequence[PhaseLike],
    *,
    energy_kev: float,
    q_range: tuple[float, float] | None = None,
    two_theta_range: tuple[float, float] | None = None,
    d_min: float | None = None,
    lorentz_polarization: bool = True,
    name: str | Sequence[str] | None = None,
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
        Photon energy in keV.
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
    debye_waller_factors
        Isotropic B factors (A^2) by element symbol, as in pymatgen; default none.
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
        strongest 100 per phase), ``structure_factor_sq`` (|F|^2 of one member,
        electrons^2).

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
    from . import __version__

    if np.ndim(energy_kev) != 0:
        raise ValueError("energy_kev must be one energy (use xrdflow.sweep for several)")
    energy = float(_positive(energy_kev, "energy_kev"))
    wavelength = HC_KEV_A / energy
    q_rng = _check_range(q_range, "q_range")
    tt_rng = _check_range(two_theta_range, "two_theta_range", 0.0, 180.0)
    if d_min is not None:
        d_min = float(_positive(d_min, "d_min"))
    if symprec <= 0:
        raise ValueError(f"symprec must be > 0, got {symprec!r}")

    phases = list(phase) if isinstance(phase, (list, tuple)) else [phase]
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

    # lower bound of d for the enumeration
    bounds = [wavelength / 2.0]
    if d_min is not None:
        bounds.append(d_min)
    if q_rng is not None and np.isfinite(q_rng[1]):
        bounds.append(20.0 * np.pi / q_rng[1])
    if tt_rng is not None and tt_rng[1] < 180.0:
        bounds.append(wavelength / (2.0 * math.sin(math.radians(tt_rng[1]) / 2.0)))
    if len(bounds) == 1:
        bounds.append(DEFAULT_D_MIN)
    d_lo = max(bounds)

    cols: dict[str, list] = {k: [] for k in
                             ("label", "hkl", "phase", "h", "k", "l", "d", "mult", "f2", "inten")}
    structures = []
    for ph, nm in zip(phases, names):
        structure = load_phase(ph)
        structures.append(structure)
        hexagonal = structure.lattice.is_hexagonal()
        fam = _families(structure, d_lo, symprec=symprec, debye_waller_factors=debye_waller_factors)
        d = fam["d"]
        tt = np.degrees(2.0 * np.arcsin(np.clip(wavelength / (2.0 * d), 0.0, 1.0)))
        q = 20.0 * np.pi / d
        keep = d >= d_lo * (1 - 1e-12)
        if q_rng is not None:
            keep &= (q >= q_rng[0]) & (q <= q_rng[1])
        if tt_rng is not None:
            keep &= (tt >= tt_rng[0]) & (tt <= tt_rng[1])
        raw = fam["f2"] * fam["multiplicity"]
        if lorentz_polarization:
            raw = raw * lorentz_polarization_factor(tt)
        # normalise over the phase's reflections *inside the selection*
        rel = 100.0 * raw / raw[keep].max() if keep.any() else raw
        for n in np.flatnonzero(keep):
            hkl = fam["hkl"][n]
            lab = _hkl_label(hkl, hexagonal)
            cols["label"].append(f"{nm} {lab}")
            cols["hkl"].append(lab)
            cols["phase"].append(nm)
            cols["h"].append(int(hkl[0]))
            cols["k"].append(int(hkl[1]))
            cols["l"].append(int(hkl[2]))
            cols["d"].append(float(d[n]))
            cols["mult"].append(int(fam["multiplicity"][n]))
            cols["f2"].append(float(fam["f2"][n]))
            cols["inten"].append(float(rel[n]))

    d = np.asarray(cols["d"], dtype=float)
    hkl_arr = np.array([cols["h"], cols["k"], cols["l"]], dtype=np.int64).reshape(3, -1)
    # d descending; ties: phase order, then larger indices first (deterministic)
    phase_idx = np.array([names.index(p) for p in cols["phase"]], dtype=np.int64)
    order = np.lexsort((-hkl_arr[2], -hkl_arr[1], -hkl_arr[0], phase_idx, -np.round(d, 10)))

    def arr(key, dtype):
        return np.asarray(cols[key], dtype=dtype)[order] if cols[key] else np.zeros(0, dtype)

    labels = arr("label", object).astype(str) if cols["label"] else np.zeros(0, str)
    d = d[order]
    q = 20.0 * np.pi / d if len(d) else d
    tt = np.degrees(2.0 * np.arcsin(np.clip(wavelength / (2.0 * d), 0.0, 1.0))) if len(d) else d
    ds = xr.Dataset(
        data_vars=dict(
            d_spacing=("reflection", d, dict(units="angstrom", long_name="d-spacing")),
            q=("reflection", q, dict(units="1/nm", long_name="scattering vector length q = 2 pi/d")),
            two_theta=("reflection", tt, dict(units="deg", long_name="scattering angle 2theta")),
            multiplicity=("reflection", arr("mult", np.int64),
                          dict(units="1", long_name="multiplicity of the reflection family")),
            intensity=("reflection", arr("inten", float), dict(
                units="1",
                long_name="relative intensity (strongest = 100 per phase)",
                lorentz_polarization=int(bool(lorentz_polarization)),
                description=(
                    "|F|^2 * multiplicity * (1 + cos^2 2theta)/(sin^2 theta cos theta) "
                    "(pymatgen's unpolarised Lorentz-polarization; integrated intensity per "
                    "unit ring length on a sphere around the sample)"
                    if lorentz_polarization else
                    "|F|^2 * multiplicity (no Lorentz-polarization factor)"),
            )),
            structure_factor_sq=("reflection", arr("f2", float), dict(
                units="electron^2",
                long_name="|F|^2 of one member of the family (no Debye-Waller unless given)")),
        ),
        coords=dict(
            reflection=("reflection", labels, dict(units="", long_name="reflection label")),
            hkl=("reflection", arr("hkl", object).astype(str) if len(d) else np.zeros(0, str),
                 dict(units="", long_name="Miller (Miller-Bravais for hexagonal) indices")),
            phase=("reflection", arr("phase", object).astype(str) if len(d) else np.zeros(0, str),
                   dict(units="", long_name="phase")),
            h=("reflection", arr("h", np.int64), dict(units="1", long_name="Miller index h")),
            k=("reflection", arr("k", np.int64), dict(units="1", long_name="Miller index k")),
            l=("reflection", arr("l", np.int64), dict(units="1", long_name="Miller index l")),
        ),
    )
    ds = ds.assign_coords(coincident=("reflection", _coincident(labels, d), dict(
        units="", long_name="other reflection families at the same d (not symmetry-equivalent)")))
    ds.attrs.update(
        title="xrdflow reflections",
        xrdflow_version=__version__,
        phase=", ".join(names),
        phase_reference=" | ".join(_reference(p) for p in phases),
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
        debye_waller_factors=str(dict(debye_waller_factors or {})),
        structure_factors="pymatgen ATOMIC_SCATTERING_PARAMS (same formula as XRDCalculator)",
    )
    return ds


# --------------------------------------------------------------------------------------
# absorption (xraydb)
# --------------------------------------------------------------------------------------
def _composition(phase: PhaseLike, density: float | None) -> tuple[dict[str, float], float]:
    structure = load_phase(phase)
    comp = structure.composition
    elements = {el.symbol: float(amt) for el, amt in comp.element_composition.items()}
    rho = float(structure.density) if density is None else float(_positive(density, "density"))
    return elements, rho


def _mu_per_mm(elements: Mapping[str, float], density: float, energy_kev: np.ndarray,
               kind: str = "total") -> np.ndarray:
    """Linear attenuation coefficient in 1/mm (same formula as xraydb.material_mu)."""
    import xraydb

    e_ev = np.asarray(energy_kev, dtype=float) * 1000.0
    flat = np.atleast_1d(e_ev).ravel()
    mass_tot = 0.0
    mu = np.zeros(flat.shape)
    for el, amount in elements.items():
        mass = amount * xraydb.atomic_mass(el)
        mu = mu + mass * np.asarray(xraydb.mu_elam(el, flat, kind=kind), dtype=float)
        mass_tot += mass
    mu_cm = density * mu / mass_tot  # 1/cm
    return (mu_cm / 10.0).reshape(e_ev.shape)


def attenuation_length(
    phase: PhaseLike, energy_kev: Any, *, density: float | None = None, kind: str = "total"
) -> np.ndarray | float:
    """X-ray attenuation length (1/e) in mm of a phase, from xraydb's Elam tables.

    Parameters
    ----------
    phase
        Built-in name, CIF path or pymatgen Structure: gives composition and density.
    energy_kev
        Photon energy (keV), scalar or array.
    density
        g/cm^3; default the crystal density of the structure.
    kind
        ``"total"`` (default: photo-absorption + coherent + incoherent scattering) or
        ``"photo"``, as in :func:`xraydb.material_mu`.

    Examples
    --------
    >>> round(float(attenuation_length("Si", 8.0478)), 4)  # 67.5 um at Cu K-alpha
    0.0675
    """
    energy = _positive(energy_kev, "energy_kev")
    if kind not in ("total", "photo"):
        raise ValueError(f"kind must be 'total' or 'photo', got {kind!r}")
    elements, rho = _composition(phase, density)
    out = 1.0 / _mu_per_mm(elements, rho, energy, kind)
    return out if out.ndim else float(out)


def transmission(
    phase: PhaseLike,
    energy_kev: Any,
    thickness_mm: Any,
    *,
    density: float | None = None,
    kind: str = "total",
) -> np.ndarray | float:
    """Transmitted fraction ``exp(-mu t)`` through ``thickness_mm`` of a phase.

    ``energy_kev`` and ``thickness_mm`` broadcast against each other (numpy rules).

    Examples
    --------
    >>> t = transmission("Mg", [30.0, 87.1], 5.0)
    >>> bool(t[0] < t[1] < 1)
    True
    """
    energy = _positive(energy_kev, "energy_kev")
    thick = np.asarray(thickness_mm, dtype=float)
    if np.any(~np.isfinite(thick)) or np.any(thick < 0):
        raise ValueError(f"thickness_mm must be finite and >= 0, got {thickness_mm!r}")
    if kind not in ("total", "photo"):
        raise ValueError(f"kind must be 'total' or 'photo', got {kind!r}")
    elements, rho = _composition(phase, density)
    out = np.exp(-_mu_per_mm(elements, rho, energy, kind) * thick)
    return out if out.ndim else float(out)
