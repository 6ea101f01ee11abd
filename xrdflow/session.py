"""A planning session: every input of one planned experiment, saved as a small TOML file.

A :class:`Session` holds what a beamline user sets up in the planner app (or writes by
hand): the phase, the beam, the sample, how the crystal is mounted, the goniometer, the
objective lens, the display options of the 3D scene and the energy range of the sweep
plots. It turns into the arguments of the library: :meth:`Session.plan_kwargs` for
:func:`xrdflow.plan`, :meth:`Session.scene_kwargs` for :func:`xrdflow.scene.scene_from_plan`,
:meth:`Session.sweep_kwargs` for :func:`xrdflow.sweep`, and :meth:`Session.inputs` for the
report. The same session file reproduces the same plan anywhere: a CIF uploaded in the
app is embedded in it (``cif_text``), and so is an uploaded lens (``[lens.table]``).
Without a reflection, :meth:`Session.resolved` fills in the one the app shows (the
strongest reachable), so the CLI and the app plan the same reflection.

Every value is checked when the session is made (indices and directions parsed, an
embedded lens read, numbers inside the ranges of :data:`ENERGY_RANGE_KEV` and the other
``*_RANGE`` constants, which are also the app's widget limits): a bad file is refused on
load with a message naming the file and the key.

The file (every key but ``version`` and the phase is optional)::

    version = 1

    [phase]
    name = "Al"                 # a built-in phase (Mg, Al, Fe-bcc, ...) or the label of cif_text
    # cif = "crystals/Al.cif"   # or a CIF file (relative paths: from this file's folder)
    # cif_text = '''data_Al ...'''   # or the CIF itself, embedded

    [beam]
    energy_kev = 17.0           # or wavelength_a = 0.7293
    two_theta_range = [0.0, 40.0]   # what the instrument reaches (deg)

    [sample]
    size_mm = [1.0, 1.0, 0.2]   # width, height, thickness (along the plate normal)
    density = 2.699             # g/cm3 for the absorption; default the crystal's

    [mount]
    up = "(111)"                # crystal direction [uvw] or plane normal (hkl) pointing up
    exit_surface = "[1-10]"     # normal of the plate's exit surface: along the beam at zero angles
    reflection = "1 1 1"        # the reflection to bring into the Bragg condition (exact member)

    [goniometer]
    preset = "dfxrm"            # dfxrm or omega-chi-phi
    stage = "shortest-path"     # or omega, omega-chi, omega-phi
    scattering_plane = "vertical"   # or horizontal
    solution = 0                # which of the stage's solutions the scene shows

    [lens]
    file = "lens_id06.toml"     # an objective lens (CRL) file, or the lens embedded as [lens.table]
    distance_mm = 5000.0        # sample-detector distance (or magnification = 10.0)

    [display]
    cells = [1, 1, 1]
    bonds = true
    polyhedra = false
    beam_size_mm = [0.5, 0.1]
    compact = true

    [sweep]
    energy_kev = [10.0, 60.0]   # energy range of the sweep plots (keV)
    points = 101

Examples
--------
>>> s = session_from_text('version = 1\\n[phase]\\nname = "Al"\\n[beam]\\nenergy_kev = 17.0\\n')
>>> s.phase, s.energy_kev
('Al', 17.0)
>>> session_from_text('version = 1\\n[phase]\\nname = "Al"\\n[beam]\\nenergy_kev = -1\\n',
...                   source="session.toml")
Traceback (most recent call last):
...
ValueError: session.toml: [beam] energy_kev: must be a positive number, got -1
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import options as O
from .units import HC_KEV_A

__all__ = ["Session", "SESSION_VERSION", "GONIOMETER_PRESETS", "ENERGY_RANGE_KEV",
           "WAVELENGTH_RANGE_A", "SIZE_RANGE_MM", "DENSITY_RANGE", "CELLS_RANGE",
           "SWEEP_POINTS_RANGE", "LENS_VALUE_RANGE", "MAX_FAMILIES", "MAX_REFLECTIONS",
           "ReflectionChoice", "load_session", "save_session", "session_from_text",
           "session_to_text", "resolve_reflection"]

#: the layout version written in every session file
SESSION_VERSION = 1
#: goniometer presets of the shortest-path stage (:data:`xrdflow._goniometer.GONIOMETERS`)
GONIOMETER_PRESETS = ("dfxrm", "omega-chi-phi")

# The ranges a session's values must lie in (inclusive). The app's widgets use the same
# limits as min/max (streamlit would silently reset a value outside them), so a session
# file the app cannot show is refused on load, in the app and in the CLI alike.
#: photon energies (keV): xraydb's Elam absorption tables (100 eV - 800 keV; the Chantler
#: scattering factors, 1.01 eV - 966 keV, cover them)
ENERGY_RANGE_KEV = (0.1, 800.0)
#: wavelengths (Angstrom): the same range as :data:`ENERGY_RANGE_KEV`
WAVELENGTH_RANGE_A = (HC_KEV_A / ENERGY_RANGE_KEV[1], HC_KEV_A / ENERGY_RANGE_KEV[0])
#: sample and beam sizes (mm)
SIZE_RANGE_MM = (0.001, 1000.0)
#: sample density (g/cm3; osmium, the densest element, is 22.6)
DENSITY_RANGE = (0.001, 30.0)
#: unit cells drawn along each axis in the 3D view
CELLS_RANGE = (1, 4)
#: points of the energy sweep
SWEEP_POINTS_RANGE = (2, 2000)
#: the lens' sample-detector distance (mm) or magnification
LENS_VALUE_RANGE = (0.001, 1.0e6)
#: families offered in the reflection list (the strongest ones)
MAX_FAMILIES = 20
#: most reciprocal-lattice points enumerated to list the reflections (about
#: 4 pi / 3 (2 sin(theta_max) / wavelength)^3 V): above, the session is refused
MAX_REFLECTIONS = 200_000

_INSTALL_HINT = 'pip install -e ".[app]" (or pip install tomli-w)'


# ------------------------------------------------------------------------------ helpers
def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
    return value.strip()


def _opt_positive(value: Any, name: str) -> float | None:
    return None if value is None else O.positive(value, name)


def _bounded(value: Any, name: str, bounds: tuple[float, float], unit: str = "",
             integer: bool = False) -> Any:
    """``value`` checked to lie in ``bounds`` (inclusive)."""
    v = O.positive_int(value, name) if integer else O.positive(value, name)
    lo, hi = bounds
    if not lo <= v <= hi:
        unit = f" {unit}" if unit else ""
        raise ValueError(f"{name}: must be between {lo:g} and {hi:g}{unit}, got {value!r}")
    return v


def _bounded_tuple(value: Any, name: str, n: int, bounds: tuple[float, float], unit: str = "",
                   integer: bool = False) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        raise ValueError(f"{name}: must be {'three' if n == 3 else n} "
                         f"{'integers' if integer else 'numbers'}, got {value!r}")
    return tuple(_bounded(v, name, bounds, unit, integer) for v in value)


def _newlines(text: str) -> str:
    """``text`` with Windows (CRLF) and old Mac (CR) line ends as ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_direction(text: str, name: str) -> None:
    """Refuse a mount direction the library cannot read (as :mod:`xrdflow._mounts` reads it)."""
    from ._lattice import parse_indices, three_indices
    from ._mounts import _float_indices

    try:
        kind, idx = parse_indices(text)
        three_indices(kind, idx, text)
        return
    except ValueError:
        pass
    if _float_indices(text) is None:
        raise ValueError(f"{name}: cannot read a direction or plane normal from {text!r}: write "
                         f"[uvw], [uvtw], (hkl), (hkil) or three numbers")


def _check_reflection(text: str, name: str, labels: tuple[str, ...]) -> None:
    """Refuse a reflection the library cannot read (``"1 1 1"``, ``"(111)"``, ``"Al 111"``)."""
    from ._lattice import parse_indices, three_indices

    body = text
    for label in labels:
        if label and text.startswith(label + " "):
            body = text[len(label) + 1:]
            break
    try:
        kind, idx = parse_indices(body)
        if kind != "hkl":
            raise ValueError(f"{text!r} is a direction, not a reflection: write (hkl) or h k l")
        three_indices(kind, idx, text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_lens_table(table: Mapping[str, Any], name: str) -> None:
    """Refuse an embedded lens the library cannot read (:func:`xrdflow._crl.read_lens`)."""
    from ._crl import read_lens

    try:
        read_lens(dict(table))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: {str(exc).removeprefix('lens: ')}") from None


def _safe_label(text: str) -> str:
    """A file-name-safe version of a phase label (letters, digits, - _ .)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "phase"


_CIF_DIR: Path | None = None


def _private_dir() -> Path:
    """This process's private temporary folder (mode 0700), removed at exit."""
    global _CIF_DIR
    if _CIF_DIR is None or not _CIF_DIR.is_dir():
        _CIF_DIR = Path(tempfile.mkdtemp(prefix="xrdflow-cif-"))
        atexit.register(shutil.rmtree, _CIF_DIR, ignore_errors=True)
    return _CIF_DIR


def _cif_file(label: str, cif_text: str) -> str:
    """An embedded CIF written to a private temporary folder: its path.

    The phase is read from a file (not a Structure) so the CIF's Debye-Waller factors are
    used exactly as for a CIF on disk; the same text always gives the same path (named
    after the label, so the plan's labels read as they would for the file).
    """
    digest = hashlib.sha256(cif_text.encode("utf-8")).hexdigest()[:16]
    path = _private_dir() / digest / f"{_safe_label(label.removesuffix('.cif'))}.cif"
    if not path.is_file():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        # a temporary file renamed into place: another thread never reads a half-written CIF
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(cif_text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return str(path)


# ------------------------------------------------------------------------------ session
@dataclass(frozen=True)
class Session:
    """Every input of one planned experiment (see the module docstring for the file).

    Attributes
    ----------
    phase
        A built-in phase name, a CIF file path, or (with ``cif_text``) the label of an
        embedded CIF.
    cif_text
        The CIF itself; when given it is the phase (a session made from an upload
        reproduces anywhere).
    energy_kev, wavelength_a
        Exactly one: photon energy (keV) or wavelength (Angstrom).
    reflection
        The reflection to plan, an exact member (``"1 1 1"``, ``"1 0 -2"``); ``None``: the
        strongest reachable one, the app's default (:meth:`resolved` fills it in).
    mount_up, exit_surface
        Crystal direction ``[uvw]`` or plane normal ``(hkl)`` pointing up (lab z), and the
        normal of the plate's exit surface, which is along the beam at zero angles (the
        mount's beam direction and the plate normal). ``mount_up=None``: no mount (no
        stage angles, no scene).
    goniometer, stage, scattering_plane
        Goniometer preset (:data:`GONIOMETER_PRESETS`), stage (``shortest-path``, ``omega``,
        ``omega-chi``, ``omega-phi``), plane of the diffracted beam.
    sample_size_mm
        (width, height, thickness) of the plate in mm; the thickness is along the plate
        normal (the exit-surface normal: the beam direction only at zero stage angles).
    density
        g/cm3 for the absorption; ``None``: the crystal's.
    two_theta_range
        (low, high) degrees the instrument reaches; ``None``: 0-180.
    lens, lens_table
        The objective lens: a lens TOML file, or the same content embedded (a mapping).
    lens_distance_mm, lens_magnification
        The lens' imaging condition (one of them, with a lens).
    solution
        Which solution (0 or 1) of the stage the scene shows.
    cells, bonds, polyhedra, beam_size_mm, compact, detector_distance_mm
        Display options of the 3D scene.
    sweep_energy_kev, sweep_points
        Energy range (low, high) keV and number of points of the sweep plots.
    base_dir
        Folder relative paths resolve against (the session file's folder); not saved.
    """

    phase: str = "Al"
    cif_text: str | None = None
    energy_kev: float | None = 17.0
    wavelength_a: float | None = None
    reflection: str | None = None
    mount_up: str | None = "(111)"
    exit_surface: str | None = None
    goniometer: str = "dfxrm"
    stage: str = "shortest-path"
    scattering_plane: str = "vertical"
    sample_size_mm: tuple[float, float, float] = (1.0, 1.0, 0.2)
    density: float | None = None
    two_theta_range: tuple[float, float] | None = None
    lens: str | None = None
    lens_table: Mapping[str, Any] | None = field(default=None, hash=False)
    lens_distance_mm: float | None = None
    lens_magnification: float | None = None
    solution: int = 0
    cells: tuple[int, int, int] = (1, 1, 1)
    bonds: bool = True
    polyhedra: bool = False
    beam_size_mm: tuple[float, float] = (0.5, 0.1)
    compact: bool = True
    detector_distance_mm: float | None = None
    sweep_energy_kev: tuple[float, float] = (5.0, 100.0)
    sweep_points: int = 96
    base_dir: str | None = field(default=None, compare=False)

    def __post_init__(self):
        s = object.__setattr__
        s(self, "phase", O.string(self.phase.strip() if isinstance(self.phase, str) else self.phase,
                                  "[phase] name"))
        if self.cif_text is not None:
            if not isinstance(self.cif_text, str) or not self.cif_text.strip():
                raise ValueError("[phase] cif_text: must be the text of a CIF file")
            s(self, "cif_text", _newlines(self.cif_text))
        if (self.energy_kev is None) == (self.wavelength_a is None):
            raise ValueError("[beam] energy_kev, wavelength_a: give exactly one of them")
        if self.energy_kev is not None:
            s(self, "energy_kev", _bounded(self.energy_kev, "[beam] energy_kev", ENERGY_RANGE_KEV,
                                           "keV"))
        if self.wavelength_a is not None:
            s(self, "wavelength_a", _bounded(self.wavelength_a, "[beam] wavelength_a",
                                             WAVELENGTH_RANGE_A, "Å"))
        for name, key in (("reflection", "[mount] reflection"), ("mount_up", "[mount] up"),
                          ("exit_surface", "[mount] exit_surface"), ("lens", "[lens] file")):
            s(self, name, _opt_str(getattr(self, name), key))
        if self.exit_surface is not None and self.mount_up is None:
            raise ValueError("[mount] exit_surface: needs [mount] up as well")
        for name, key in (("mount_up", "[mount] up"), ("exit_surface", "[mount] exit_surface")):
            if getattr(self, name) is not None:
                _check_direction(getattr(self, name), key)
        if self.reflection is not None:
            _check_reflection(self.reflection, "[mount] reflection",
                              (self.phase, Path(self.phase).stem.removesuffix(".cif")))
        O.choice(self.goniometer, "[goniometer] preset", GONIOMETER_PRESETS)
        O.choice(self.stage, "[goniometer] stage", O.STAGES)
        O.choice(self.scattering_plane, "[goniometer] scattering_plane", O.SCATTERING_PLANES)
        s(self, "sample_size_mm", _bounded_tuple(self.sample_size_mm, "[sample] size_mm", 3,
                                                 SIZE_RANGE_MM, "mm"))
        if self.density is not None:
            s(self, "density", _bounded(self.density, "[sample] density", DENSITY_RANGE, "g/cm³"))
        if self.two_theta_range is not None:
            s(self, "two_theta_range", O.value_range(self.two_theta_range, "[beam] two_theta_range",
                                                     lo_bound=0.0, hi_bound=180.0))
        if self.lens is not None and self.lens_table is not None:
            raise ValueError("[lens] file, table: give one of them, not both")
        if self.lens_table is not None:
            if not isinstance(self.lens_table, Mapping):
                raise ValueError(f"[lens] table: must be a table, got {self.lens_table!r}")
            _check_lens_table(self.lens_table, "[lens] table")
        for name, key in (("lens_distance_mm", "[lens] distance_mm"),
                          ("lens_magnification", "[lens] magnification")):
            if getattr(self, name) is not None:
                s(self, name, _bounded(getattr(self, name), key, LENS_VALUE_RANGE))
        has_lens = self.lens is not None or self.lens_table is not None
        if has_lens and (self.lens_distance_mm is None) == (self.lens_magnification is None):
            raise ValueError("[lens] distance_mm, magnification: give exactly one with a lens")
        if not has_lens and (self.lens_distance_mm is not None or self.lens_magnification is not None):
            raise ValueError("[lens] distance_mm, magnification: need a lens (file or table)")
        s(self, "solution", O.choice(O.positive_int(self.solution, "[goniometer] solution",
                                                    allow_zero=True), "[goniometer] solution", (0, 1)))
        s(self, "cells", _bounded_tuple(self.cells, "[display] cells", 3, CELLS_RANGE,
                                        integer=True))
        s(self, "bonds", O.boolean(self.bonds, "[display] bonds"))
        s(self, "polyhedra", O.boolean(self.polyhedra, "[display] polyhedra"))
        s(self, "compact", O.boolean(self.compact, "[display] compact"))
        s(self, "beam_size_mm", _bounded_tuple(self.beam_size_mm, "[display] beam_size_mm", 2,
                                               SIZE_RANGE_MM, "mm"))
        s(self, "detector_distance_mm",
          _opt_positive(self.detector_distance_mm, "[display] detector_distance_mm"))
        lo, hi = O.value_range(self.sweep_energy_kev, "[sweep] energy_kev", lo_bound=0.0)
        s(self, "sweep_energy_kev", (_bounded(lo, "[sweep] energy_kev", ENERGY_RANGE_KEV, "keV"),
                                     _bounded(hi, "[sweep] energy_kev", ENERGY_RANGE_KEV, "keV")))
        s(self, "sweep_points", _bounded(self.sweep_points, "[sweep] points", SWEEP_POINTS_RANGE,
                                         integer=True))

    # ------------------------------------------------------------------ derived values
    def replace(self, **changes: Any) -> "Session":
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    @property
    def thickness_mm(self) -> float:
        """The plate thickness along its normal (the exit-surface normal, along the beam only
        at zero stage angles), in mm: the third of ``sample_size_mm``."""
        return float(self.sample_size_mm[2])

    @property
    def energy(self) -> float:
        """The photon energy (keV), from ``energy_kev`` or ``wavelength_a``."""
        from .units import HC_KEV_A

        return float(self.energy_kev) if self.energy_kev is not None else HC_KEV_A / float(self.wavelength_a)

    @property
    def has_mount(self) -> bool:
        """Whether the crystal's mount is given (stage angles and the 3D scene need it)."""
        return self.mount_up is not None

    def _resolve(self, path: str) -> str:
        p = Path(path).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = Path(self.base_dir) / p
        return str(p)

    def phase_source(self) -> str:
        """What ``phase=`` takes: the built-in name, the CIF path (resolved), or the embedded
        CIF written to a private temporary file."""
        from ._phases import BUILTIN_PHASES

        if self.cif_text is not None:
            return _cif_file(self.phase, self.cif_text)
        if self.phase in BUILTIN_PHASES:
            return self.phase
        return self._resolve(self.phase)

    def lens_source(self) -> Any:
        """What ``lens=`` takes: the lens file (resolved), the embedded table, or None."""
        if self.lens_table is not None:
            return dict(self.lens_table)
        return None if self.lens is None else self._resolve(self.lens)

    def mount_dict(self) -> dict[str, str | None] | None:
        """``{"vertical": up, "beam": exit surface}`` or None without a mount."""
        if self.mount_up is None:
            return None
        return {"vertical": self.mount_up, "beam": self.exit_surface}

    def plan_kwargs(self, reflection: Any = "session") -> dict[str, Any]:
        """Exactly the arguments of :func:`xrdflow.plan` (``xrdflow.plan(**kw)``).

        ``reflection`` overrides the session's (``None``: every reachable family).
        """
        kw: dict[str, Any] = dict(phase=self.phase_source())
        if self.energy_kev is not None:
            kw["energy_kev"] = self.energy_kev
        else:
            kw["wavelength_a"] = self.wavelength_a
        kw["reflection"] = self.reflection if reflection == "session" else reflection
        kw["thickness_mm"] = self.thickness_mm
        kw.update(self._orientation_kwargs())
        kw.update(self._absorption_and_lens_kwargs())
        return kw

    def _absorption_and_lens_kwargs(self) -> dict[str, Any]:
        """Density, 2theta range and objective lens: what plan and sweep share."""
        kw: dict[str, Any] = {}
        if self.density is not None:
            kw["density"] = self.density
        if self.two_theta_range is not None:
            kw["two_theta_range"] = tuple(self.two_theta_range)
        lens = self.lens_source()
        if lens is not None:
            kw["lens"] = lens
            kw["lens_distance_mm"] = self.lens_distance_mm
            kw["lens_magnification"] = self.lens_magnification
        return kw

    def _orientation_kwargs(self) -> dict[str, Any]:
        mount = self.mount_dict()
        if mount is None:
            return {}
        kw: dict[str, Any] = dict(mount=mount, stage=self.stage,
                                  scattering_plane=self.scattering_plane)
        if self.stage == "shortest-path":
            kw["goniometer"] = self.goniometer
            if self.exit_surface is not None:
                kw["surface_normal"] = self.exit_surface
        return kw

    def scene_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`xrdflow.scene.scene_from_plan` (after ``ds, phase``)."""
        return dict(reflection=self.reflection, solution=self.solution,
                    sample_size_mm=tuple(self.sample_size_mm), beam_size_mm=tuple(self.beam_size_mm),
                    detector_distance_mm=self.detector_distance_mm, compact=self.compact,
                    cells=tuple(self.cells), bonds=self.bonds, polyhedra=self.polyhedra)

    def sweep_energies(self) -> np.ndarray:
        """The sweep's energies (keV): ``sweep_points`` from low to high, with the
        session's energy added (so the sweep holds the plan's point exactly)."""
        lo, hi = self.sweep_energy_kev
        e = np.linspace(lo, hi, self.sweep_points)
        return np.unique(np.append(e, self.energy))

    def sweep_kwargs(self, reflection: Any = "session") -> dict[str, Any]:
        """Arguments of :func:`xrdflow.sweep` over the sweep's energy range: the session's
        reflection (if any), thickness, orientation, density, 2theta range
        and lens with its imaging condition (``xrdflow.sweep(**kw)``)."""
        refl = self.reflection if reflection == "session" else reflection
        kw: dict[str, Any] = dict(phase=self.phase_source(), energy_kev=self.sweep_energies(),
                                  thickness_mm=self.thickness_mm)
        if refl is not None:
            kw["reflections"] = [refl]
            kw.update(self._orientation_kwargs())
        kw.update(self._absorption_and_lens_kwargs())
        return kw

    def inputs(self) -> dict[str, str]:
        """The inputs as labelled text, in reading order (printed in the report)."""
        from .units import HC_KEV_A

        if self.cif_text is not None:
            phase = f"{self.phase} (embedded CIF)"
        else:
            phase = self.phase
        out = {"Phase": phase}
        if self.energy_kev is not None:
            out["Energy"] = f"{self.energy_kev:g} keV (wavelength {HC_KEV_A / self.energy_kev:.6g} Å)"
        else:
            out["Energy"] = f"{HC_KEV_A / self.wavelength_a:.6g} keV (wavelength {self.wavelength_a:g} Å)"
        if self.reflection is not None:
            out["Reflection"] = self.reflection
        else:
            try:
                out["Reflection"] = f"{self.resolved().reflection} (the strongest reachable)"
            except ValueError as exc:
                out["Reflection"] = ("none: no reflection diffracts inside the 2θ range"
                                     if str(exc).startswith("reflection: no reflection")
                                     else f"not chosen ({str(exc).removeprefix('reflection: ')})")
        lo, hi = self.two_theta_range or (0.0, 180.0)
        out["2θ range"] = f"{lo:g}–{hi:g}°"
        w, h, t = self.sample_size_mm
        out["Sample (width × height × thickness)"] = f"{w:g} × {h:g} × {t:g} mm"
        out["Density"] = "from the crystal" if self.density is None else f"{self.density:g} g/cm³"
        if self.has_mount:
            out["Mount: up"] = self.mount_up
            out["Mount: exit surface"] = self.exit_surface or "default (up × [001])"
            out["Stage"] = self.stage
            if self.stage == "shortest-path":
                out["Goniometer"] = self.goniometer
            out["Scattering plane"] = self.scattering_plane
            out["Solution shown"] = str(self.solution)
        else:
            out["Mount"] = "none (no stage angles)"
        if self.lens is not None or self.lens_table is not None:
            out["Objective lens"] = self.lens if self.lens is not None else str(
                self.lens_table.get("description", "embedded lens"))
            out["Lens condition"] = (f"sample-detector distance {self.lens_distance_mm:g} mm"
                                     if self.lens_distance_mm is not None
                                     else f"magnification {self.lens_magnification:g}")
        lo, hi = self.sweep_energy_kev
        out["Sweep"] = f"{lo:g}–{hi:g} keV, {self.sweep_points} points"
        return out

    # ------------------------------------------------------------------ reflection
    def reflection_choices(self) -> list["ReflectionChoice"]:
        """The reflections the app offers, strongest first (the first is the default).

        Every family that diffracts inside the 2theta range at the session's energy, at most
        :data:`MAX_FAMILIES`. With a mount each family is one exact member: the one the
        stage brings into the Bragg condition with the shortest path through the plate (for
        other stages, the first member with a solution). Cached (a few sessions).

        Raises ``ValueError`` when listing them would enumerate more than
        :data:`MAX_REFLECTIONS` reciprocal-lattice points (a large cell at a high energy).
        """
        choices, _ = _candidates(_choice_key(self), self.base_dir)
        return list(choices)

    def resolved(self) -> "Session":
        """This session with ``reflection`` filled in: the session's own if it has one, else
        the strongest reachable one, exactly the default the app shows
        (``reflection_choices()[0]``). The CLI and the app plan the same reflection with it.

        Raises ``ValueError`` (starting ``"reflection: "``) when no reflection diffracts
        inside the 2theta range at the energy.
        """
        if self.reflection is not None:
            return self
        choices = self.reflection_choices()
        if not choices:
            lo, hi = self.two_theta_range or (0.0, 180.0)
            raise ValueError(f"reflection: no reflection of {self.phase} diffracts inside the "
                             f"2θ range {lo:g}–{hi:g}° at {self.energy:.4g} keV: raise the "
                             f"energy or widen the 2θ range")
        return self.replace(reflection=choices[0].value)

    # ------------------------------------------------------------------ TOML layout
    def to_dict(self) -> dict[str, Any]:
        """The session as the nested tables of its TOML file (None values left out)."""
        from ._phases import BUILTIN_PHASES

        phase: dict[str, Any] = {}
        if self.cif_text is not None:
            phase = dict(name=self.phase, cif_text=self.cif_text)
        elif self.phase in BUILTIN_PHASES:
            phase = dict(name=self.phase)
        else:
            phase = dict(cif=self.phase)
        beam = dict(energy_kev=self.energy_kev, wavelength_a=self.wavelength_a,
                    two_theta_range=list(self.two_theta_range) if self.two_theta_range else None)
        sample = dict(size_mm=list(self.sample_size_mm), density=self.density)
        mount = dict(up=self.mount_up, exit_surface=self.exit_surface, reflection=self.reflection)
        gonio = dict(preset=self.goniometer, stage=self.stage,
                     scattering_plane=self.scattering_plane, solution=self.solution)
        lens = dict(file=self.lens, distance_mm=self.lens_distance_mm,
                    magnification=self.lens_magnification,
                    table=dict(self.lens_table) if self.lens_table is not None else None)
        display = dict(cells=list(self.cells), bonds=self.bonds, polyhedra=self.polyhedra,
                       beam_size_mm=list(self.beam_size_mm), compact=self.compact,
                       detector_distance_mm=self.detector_distance_mm)
        sweep = dict(energy_kev=list(self.sweep_energy_kev), points=self.sweep_points)
        out: dict[str, Any] = {"version": SESSION_VERSION}
        for name, table in (("phase", phase), ("beam", beam), ("sample", sample), ("mount", mount),
                            ("goniometer", gonio), ("lens", lens), ("display", display),
                            ("sweep", sweep)):
            table = {k: v for k, v in table.items() if v is not None}
            if table:
                out[name] = table
        return out


def resolve_reflection(session: Session) -> Session:
    """``session.resolved()``: the session with the reflection the app would show."""
    return session.resolved()


# ----------------------------------------------------------------------- reflections
@dataclass(frozen=True)
class ReflectionChoice:
    """One entry of the reflection list: ``value`` goes into ``Session.reflection``."""

    value: str
    family: str
    two_theta: float
    intensity: float
    has_solution: bool
    hkl: tuple[int, int, int] = (0, 0, 0)

    @property
    def label(self) -> str:
        """What the list shows, e.g. ``111  (family Al 111)``: the same at every energy, so
        the list does not change under the user's hands (2θ and intensity are in the table)."""
        text = f"{self.value}  (family {self.family})"
        return text if self.has_solution else text + " — no stage solution"


#: the fields that do not change the reflection list (display, lens, sweep)
_NOT_IN_CHOICES = ("reflection", "solution", "lens", "lens_table", "lens_distance_mm",
                   "lens_magnification", "cells", "bonds", "polyhedra", "beam_size_mm", "compact",
                   "detector_distance_mm", "sweep_energy_kev", "sweep_points")


def _choice_key(session: Session) -> Session:
    """The session with the defaults (of ``Session()``) for what does not change the
    reflection list (better cache hits)."""
    defaults = {f.name: f.default for f in fields(Session) if f.name in _NOT_IN_CHOICES}
    return session.replace(**defaults)


def _check_enumeration(structure, session: Session) -> None:
    """Refuse a session whose reflection list would enumerate too many lattice points."""
    lo, hi = session.two_theta_range or (0.0, 180.0)
    wavelength = HC_KEV_A / session.energy
    q = 2.0 * np.sin(np.radians(hi) / 2.0) / wavelength  # 1/d at the highest 2theta
    volume = float(structure.lattice.volume)
    n = 4.0 * np.pi / 3.0 * q ** 3 * volume
    if n > MAX_REFLECTIONS:
        raise ValueError(f"reflection: listing the reflections of {session.phase} (cell volume "
                         f"{volume:.4g} Å³) at {session.energy:.4g} keV up to 2θ = {hi:g}° would "
                         f"enumerate about {n:.3g} reciprocal-lattice points (the limit is "
                         f"{MAX_REFLECTIONS:g}): lower the energy or the 2θ range maximum")


@lru_cache(maxsize=16)
def _candidates(key: Session, base_dir: str | None):
    """(choices, plan dataset of the chosen members) for the session ``key``."""
    try:
        return _enumerate_candidates(key)
    except MemoryError:
        lo, hi = key.two_theta_range or (0.0, 180.0)
        raise ValueError(f"reflection: not enough memory to list the reflections of {key.phase} "
                         f"at {key.energy:.4g} keV up to 2θ = {hi:g}°: lower the energy or the "
                         f"2θ range maximum") from None


def _enumerate_candidates(key: Session):
    import xrdflow

    from ._lattice import laue_rotations
    from ._phases import load_phase

    kw = key.plan_kwargs(reflection=None)
    structure = load_phase(kw["phase"])
    _check_enumeration(structure, key)
    orient = {k: kw.pop(k) for k in ("mount", "stage", "scattering_plane", "goniometer",
                                     "surface_normal") if k in kw}
    thickness = kw.pop("thickness_mm")
    kw.pop("reflection")
    # every family, with its Bragg angle and intensity (reachability from 2theta only)
    try:
        fam = xrdflow.plan(**kw, reflection=None).compute()
    except ValueError as exc:
        if str(exc).startswith("reflections: no reflection satisfies"):
            return (), None  # none diffracts (wavelength > 2d): no choice
        raise
    lo, hi = key.two_theta_range or (0.0, 180.0)
    tt = fam.two_theta.values[0]
    inten = fam.intensity.values[0]
    ok = np.isfinite(tt) & (tt >= lo) & (tt <= hi)
    order = [i for i in np.argsort(-np.nan_to_num(inten, nan=-1.0), kind="stable") if ok[i]]
    order = order[:MAX_FAMILIES]
    if not order:
        return (), None
    hkl = np.stack([fam[c].values for c in ("h", "k", "l")], axis=1)[order]
    if not orient:
        ds = xrdflow.plan(**kw, thickness_mm=thickness,
                          reflection=[" ".join(str(int(x)) for x in v) for v in hkl]).compute()
        keep = [_positions(ds)[tuple(int(x) for x in v)] for v in hkl]
        choices = tuple(ReflectionChoice(str(ds.hkl.values[j]), str(fam.reflection.values[i]),
                                         float(tt[i]), float(inten[i]), True, _hkl_at(ds, j))
                        for j, i in zip(keep, order))
        return choices, ds.isel(reflection=keep)
    # every member of each family, with the mount: keep the one with the shortest path
    rots = laue_rotations(structure, 0.01)
    members: list[list[tuple[int, int, int]]] = []
    for v in hkl:
        orbit = np.einsum("mji,j->mi", rots, v)
        nneg = (orbit < 0).sum(axis=1)  # the representative's rule first: fewest minus signs
        _, first = np.unique(orbit, axis=0, return_index=True)
        members.append([tuple(int(x) for x in orbit[m])
                        for m in sorted(first, key=lambda m: (nneg[m], tuple(-orbit[m])))])
    ds = xrdflow.plan(**kw, thickness_mm=thickness, **orient,
                      reflection=[" ".join(map(str, m)) for fam_m in members for m in fam_m]).compute()
    pos = _positions(ds)
    names = list(ds.attrs.get("stage_angles", []))
    angle0 = ds[names[0]].values[0] if names else np.zeros((ds.sizes["reflection"], 2))
    score = (ds.path_length.values[0] if "path_length" in ds
             else np.where(np.isfinite(angle0), 0.0, np.nan))
    keep, choices = [], []
    for fam_m, i in zip(members, order):
        idx = np.array([pos[m] for m in fam_m])
        best = np.where(np.isfinite(score[idx]), score[idx], np.inf).min(axis=1)
        solved = bool(np.isfinite(best).any())
        j = int(idx[int(np.argmax(best <= best.min() * (1 + 1e-9) + 1e-12))] if solved else idx[0])
        keep.append(j)
        choices.append(ReflectionChoice(str(ds.hkl.values[j]), str(fam.reflection.values[i]),
                                        float(tt[i]), float(inten[i]), solved, _hkl_at(ds, j)))
    return tuple(choices), ds.isel(reflection=keep)


def _hkl_at(ds, j: int) -> tuple[int, int, int]:
    return int(ds.h.values[j]), int(ds.k.values[j]), int(ds.l.values[j])


def _positions(ds) -> dict[tuple[int, int, int], int]:
    """(h, k, l) -> position along ``reflection`` (the plan sorts what it is given)."""
    return {(int(h), int(k), int(l)): n for n, (h, k, l) in
            enumerate(zip(ds.h.values, ds.k.values, ds.l.values))}


#: TOML section -> {key: Session field}
_LAYOUT: dict[str, dict[str, str]] = {
    "phase": {"name": "phase", "cif": "phase", "cif_text": "cif_text"},
    "beam": {"energy_kev": "energy_kev", "wavelength_a": "wavelength_a",
             "two_theta_range": "two_theta_range"},
    "sample": {"size_mm": "sample_size_mm", "density": "density"},
    "mount": {"up": "mount_up", "exit_surface": "exit_surface", "reflection": "reflection"},
    "goniometer": {"preset": "goniometer", "stage": "stage", "scattering_plane": "scattering_plane",
                   "solution": "solution"},
    "lens": {"file": "lens", "table": "lens_table", "distance_mm": "lens_distance_mm",
             "magnification": "lens_magnification"},
    "display": {"cells": "cells", "bonds": "bonds", "polyhedra": "polyhedra",
                "beam_size_mm": "beam_size_mm", "compact": "compact",
                "detector_distance_mm": "detector_distance_mm"},
    "sweep": {"energy_kev": "sweep_energy_kev", "points": "sweep_points"},
}


def _from_dict(raw: Mapping[str, Any], source: str, base_dir: str | None) -> Session:
    if "version" not in raw:
        raise ValueError(f"{source}: version: missing key (write version = {SESSION_VERSION})")
    if type(raw["version"]) is not int or raw["version"] != SESSION_VERSION:  # not 1.0, true
        raise ValueError(f"{source}: version: must be {SESSION_VERSION}, got {raw['version']!r}")
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if section == "version":
            continue
        if section not in _LAYOUT:
            raise ValueError(f"{source}: [{section}]: unknown section (expected "
                             f"{', '.join(_LAYOUT)})")
        if not isinstance(table, Mapping):
            raise ValueError(f"{source}: {section}: must be a table [{section}]")
        for key, value in table.items():
            if key not in _LAYOUT[section]:
                raise ValueError(f"{source}: [{section}] {key}: unknown key (expected "
                                 f"{', '.join(_LAYOUT[section])})")
            values[_LAYOUT[section][key]] = value
    phase = raw.get("phase", {})
    if not isinstance(phase, Mapping) or ("name" not in phase and "cif" not in phase):
        raise ValueError(f"{source}: [phase] name: missing key (a built-in phase name, or "
                         "cif = a CIF file)")
    if "name" in phase and "cif" in phase:
        raise ValueError(f"{source}: [phase] name, cif: give one of them")
    if "cif" in phase and "cif_text" in phase:
        raise ValueError(f"{source}: [phase] cif, cif_text: give one of them")
    if "name" in phase and "cif_text" not in phase:
        from ._phases import BUILTIN_PHASES

        if phase["name"] not in BUILTIN_PHASES:
            raise ValueError(f"{source}: [phase] name: must be a built-in phase "
                             f"({', '.join(BUILTIN_PHASES)}), got {phase['name']!r}; for a CIF "
                             f"write cif = \"file.cif\"")
    beam = raw.get("beam", {})
    if "energy_kev" not in beam and "wavelength_a" not in beam:
        raise ValueError(f"{source}: [beam] energy_kev: missing key (or wavelength_a)")
    if "wavelength_a" in beam:
        values.setdefault("energy_kev", None)
    if "up" not in raw.get("mount", {}):
        values["mount_up"] = None  # no mount in the file: none (the default is the app's)
    try:
        return Session(base_dir=base_dir, **values)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    except TypeError as exc:  # a wrong type where a table was expected
        raise ValueError(f"{source}: {exc}") from None


def session_from_text(text: str, *, source: str = "session", base_dir: str | os.PathLike | None = None) -> Session:
    """A :class:`Session` from the text of a session file.

    ``source`` names the file in error messages; ``base_dir`` is the folder relative paths
    (``cif``, ``[lens] file``) resolve against.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not a valid TOML session file: {exc}") from None
    return _from_dict(raw, source, None if base_dir is None else str(base_dir))


def session_to_text(session: Session) -> str:
    """The session file's text (TOML, ``version = 1``); needs ``tomli-w``."""
    try:
        import tomli_w
    except ImportError:
        raise ImportError(f"writing a session file needs tomli-w: {_INSTALL_HINT}") from None
    text = tomli_w.dumps(session.to_dict(), multiline_strings=True)
    # tomli-w writes every array over several lines: put short numeric ones on one line
    compact = _NUMERIC_ARRAY.sub(lambda m: "[" + ", ".join(
        v.strip().rstrip(",") for v in m.group(1).splitlines()) + "]", text)
    return compact if tomllib.loads(compact) == tomllib.loads(text) else text


#: an array of numbers or booleans as tomli-w writes it (one item a line)
_NUMERIC_ARRAY = re.compile(r"\[\n((?: {4}[-+0-9.eEinftrulsa_]+,\n)+)\]")


def load_session(path: str | os.PathLike) -> Session:
    """Read a session file; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: session file not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (UTF-8) session file") from None
    return session_from_text(text, source=str(path), base_dir=path.resolve().parent)


def save_session(session: Session, path: str | os.PathLike) -> Path:
    """Write the session file atomically (a temporary file renamed into place).

    Relative paths stay relative when the file goes to the folder they resolve against (the
    session's ``base_dir``; without one, the working folder); written elsewhere, they are
    made absolute so the file still finds them.
    """
    path = Path(path)
    folder = path.resolve().parent
    changes: dict[str, Any] = {}
    if session.base_dir is None:  # relative paths resolve against the working folder
        session = replace(session, base_dir=str(Path.cwd()))
    if Path(session.base_dir).resolve() != folder:
        if session.cif_text is None and session.phase_source() != session.phase:
            changes["phase"] = str(Path(session.phase_source()).resolve())
        if session.lens is not None:
            changes["lens"] = str(Path(session.lens_source()).resolve())
    out = replace(session, **changes) if changes else session
    text = session_to_text(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
