"""Phases: built-in structures (with their literature references), CIF files, pymatgen
Structures. Re-exported by :mod:`xrdflow.crystal`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

__all__ = ["BUILTIN_PHASES", "PhaseLike", "load_phase", "phase_name", "phase_reference"]

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
            structs = Structure.from_file(str(path))
            return structs
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
