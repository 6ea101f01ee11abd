"""Phases: built-in structures (with their literature references), CIF files, pymatgen
Structures. Re-exported by :mod:`xrdflow.crystal`.

A structure read from a CIF carries the CIF's isotropic displacement parameters as the
site property :data:`B_ISO_PROPERTY` (pymatgen's CifParser drops them); see
:func:`cif_b_iso`.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = ["BUILTIN_PHASES", "B_ISO_PROPERTY", "PhaseLike", "load_phase", "phase_name",
           "phase_reference", "cif_b_iso"]

#: site property of a structure read from a CIF: ``{element: B}`` (A^2, isotropic
#: Debye-Waller ``exp(-B s^2)``) per site, from the CIF's U / B (``B = 8 pi^2 U``)
B_ISO_PROPERTY = "b_iso"

#: how far (A) a structure's site may lie from a CIF atom's symmetry image to be that atom
CIF_SITE_TOLERANCE = 0.02

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
            structure = Structure.from_file(str(path))
            try:
                b_iso = cif_b_iso(path, structure)
            except Exception as exc:  # noqa: BLE001 - pymatgen read it: keep it, without U/B
                warnings.warn(f"{path}: cannot read U/B from the CIF ({exc}); no Debye-Waller "
                              "factors", UserWarning, stacklevel=2)
                b_iso = None
            if b_iso is not None:
                structure.add_site_property(B_ISO_PROPERTY, b_iso)
            return structure
        raise ValueError(
            f"phase: {phase!r} is neither a built-in phase ({', '.join(BUILTIN_PHASES)}) "
            "nor an existing CIF file"
        )
    raise ValueError(
        f"phase: must be a built-in name, a CIF path or a pymatgen Structure, "
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


def phase_reference(phase: PhaseLike) -> str:
    """Where a phase's structure comes from (the built-in's literature reference, a CIF path).

    Examples
    --------
    >>> phase_reference("Si")[:14]
    'Si (diamond), '
    """
    if isinstance(phase, str) and phase in _BUILTIN:
        return _BUILTIN[phase]["reference"]
    if isinstance(phase, (str, os.PathLike)):
        return f"CIF file {os.fspath(phase)}"
    return "user-supplied pymatgen Structure"


# --------------------------------------------------------------------------------------
# CIF displacement parameters
# --------------------------------------------------------------------------------------
def _cif_number(text: Any) -> float:
    """A CIF number without its standard uncertainty (``0.0123(4)``); NaN for ``?``/``.``."""
    match = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", str(text))
    return float(match.group(1)) if match else math.nan


def _cif_block(path) -> dict[str, list[str]] | None:
    """The first data block with atom sites (as pymatgen takes the first structure), keys
    lower case with ``.`` as ``_`` (DDL1 and DDLm spellings alike), values as lists."""
    from pymatgen.io.cif import CifFile

    for block in CifFile.from_file(str(path)).data.values():
        data = {k.lower().replace(".", "_"): (v if isinstance(v, list) else [v])
                for k, v in block.data.items()}
        if "_atom_site_fract_x" in data:
            return data
    return None


def _element(text: str) -> str:
    match = re.match(r"[A-Z][a-z]?", text.strip().capitalize())
    return match.group(0) if match else text


def _cif_atoms(data: dict[str, list[str]], lattice) -> dict[str, Any]:
    """Labels, elements, fractional coordinates and B (A^2, NaN where not given)."""
    n = len(data["_atom_site_fract_x"])
    labels = data.get("_atom_site_label", [f"atom{i + 1}" for i in range(n)])
    types = data.get("_atom_site_type_symbol", labels)
    frac = np.array([[_cif_number(v) for v in data[f"_atom_site_fract_{ax}"]] for ax in "xyz"]).T
    b = np.full(n, math.nan)
    for key, scale in (("_atom_site_b_iso_or_equiv", 1.0),
                       ("_atom_site_u_iso_or_equiv", 8.0 * math.pi ** 2)):
        if key in data:
            values = np.array([_cif_number(v) for v in data[key]]) * scale
            b = np.where(np.isfinite(values), values, b)
    for kind, scale in (("b", 1.0), ("u", 8.0 * math.pi ** 2)):  # anisotropic: B_eq
        keys = [f"_atom_site_aniso_{kind}_{ij}" for ij in ("11", "22", "33", "12", "13", "23")]
        if "_atom_site_aniso_label" not in data or not all(k in data for k in keys):
            continue
        a, nrm = lattice.matrix, np.diag(lattice.reciprocal_lattice_crystallographic.abc)
        for row, label in enumerate(data["_atom_site_aniso_label"]):
            u11, u22, u33, u12, u13, u23 = (_cif_number(data[k][row]) for k in keys)
            u = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
            for i in np.flatnonzero((np.asarray(labels) == label) & ~np.isfinite(b)):
                b[i] = scale * np.trace(a.T @ nrm @ u @ nrm @ a) / 3.0  # U_eq
    return dict(labels=list(labels), elements=[_element(t) for t in types], frac=frac, b=b)


def _cif_symops(data: dict[str, list[str]]) -> list | None:
    """The CIF's symmetry operators (pymatgen SymmOps), from the list or the H-M symbol."""
    from pymatgen.core.operations import SymmOp

    for key in ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz"):
        if key in data:
            try:
                return [SymmOp.from_xyz_str(re.sub(r"\s+", "", v)) for v in data[key]]
            except Exception:
                return None
    for key in ("_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m"):
        if key in data:
            try:
                from pymatgen.symmetry.groups import SpaceGroup

                return list(SpaceGroup(data[key][0].strip()).symmetry_ops)
            except Exception:
                return None
    return None


def _images(atoms: dict[str, Any], ops: list | None) -> tuple[np.ndarray, np.ndarray]:
    """Fractional positions of every CIF atom's symmetry images and the atom of each."""
    frac = atoms["frac"]
    if not ops:
        return frac % 1.0, np.arange(len(frac))
    pos = np.concatenate([frac @ op.rotation_matrix.T + op.translation_vector for op in ops])
    return pos % 1.0, np.tile(np.arange(len(frac)), len(ops))


def cif_b_iso(path, structure) -> list[dict[str, float]] | None:
    """Per site of ``structure`` (read from the CIF at ``path``), ``{element: B}`` (A^2).

    The CIF's atoms (``_atom_site_label``, type, fractional coordinates,
    ``_atom_site_U_iso_or_equiv`` -> ``B = 8 pi^2 U``, ``_atom_site_B_iso_or_equiv``, or
    ``U_eq`` / ``B_eq`` from ``_atom_site_aniso_*``) are expanded with the CIF's own
    symmetry operators (else its H-M symbol); a site takes, for each of its elements, the
    atom of that element with an image within :data:`CIF_SITE_TOLERANCE` of it (modulo
    lattice translations): positions, not labels, since pymatgen relabels merged
    (mixed-occupancy) sites. Failing that, the atom whose label is the site's label. None
    when the CIF gives no U / B at all; a site or element left without one gets no factor,
    with a warning.
    """
    data = _cif_block(path)
    if data is None:
        return None
    atoms = _cif_atoms(data, structure.lattice)
    if not np.isfinite(atoms["b"]).any():
        return None
    pos, owner = _images(atoms, _cif_symops(data))
    out, missing = [], []
    for site in structure:
        delta = np.asarray(site.frac_coords, dtype=float) - pos
        dist = np.linalg.norm((delta - np.rint(delta)) @ structure.lattice.matrix, axis=1)
        near = owner[np.argsort(dist)[: int((dist < CIF_SITE_TOLERANCE).sum())]]
        label = getattr(site, "label", None)
        by_label = [i for i, lab in enumerate(atoms["labels"]) if lab == label]
        entry = {}
        for sp in site.species:
            el = sp.symbol
            match = [i for i in list(near) + by_label if atoms["elements"][i] == el]
            if match and np.isfinite(atoms["b"][match[0]]):
                entry[el] = float(atoms["b"][match[0]])
            else:
                missing.append(f"{label or el} ({el})")
        out.append(entry)
    if missing:
        names = ", ".join(sorted(set(missing)))
        warnings.warn(f"{os.fspath(path)}: no U/B in the CIF for {names}; no Debye-Waller "
                      "factor for them", UserWarning, stacklevel=3)
    if any(b < 0 for entry in out for b in entry.values()):
        warnings.warn(f"{os.fspath(path)}: negative U/B in the CIF (used as given)", UserWarning,
                      stacklevel=3)
    return out
