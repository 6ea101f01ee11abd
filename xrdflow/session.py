"""A planning session: every input of one planned experiment, saved as a small TOML file.

A :class:`Session` holds what a beamline user sets up in the planner app (or writes by
hand): the phase, the beam, the sample, how the crystal is mounted, the goniometer, the
objective lens, the display options of the 3D scene and the energy range of the sweep
plots. It turns into the arguments of the library: :meth:`Session.plan_kwargs` for
:func:`xrdflow.plan`, :meth:`Session.scene_kwargs` for :func:`xrdflow.scene.scene_from_plan`,
:meth:`Session.sweep_kwargs` for :func:`xrdflow.sweep`, and :meth:`Session.inputs` for the
report. The same session file reproduces the same plan anywhere: a CIF uploaded in the
app is embedded in it (``cif_text``), and so is an uploaded lens (``[lens.table]``).

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
    size_mm = [1.0, 1.0, 0.2]   # width, height, thickness (the thickness is along the beam)
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import options as O

__all__ = ["Session", "SESSION_VERSION", "GONIOMETER_PRESETS", "load_session", "save_session",
           "session_from_text", "session_to_text"]

#: the layout version written in every session file
SESSION_VERSION = 1
#: goniometer presets of the shortest-path stage (:data:`xrdflow._goniometer.GONIOMETERS`)
GONIOMETER_PRESETS = ("dfxrm", "omega-chi-phi")

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


def _triple(value: Any, name: str, *, integer: bool = False) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{name}: must be three numbers, got {value!r}")
    if integer:
        return tuple(O.positive_int(v, name) for v in value)
    return tuple(O.positive(v, name) for v in value)


def _positive_pair(value: Any, name: str) -> tuple[float, float]:
    a, b = O.pair(value, name)
    return O.positive(a, name), O.positive(b, name)


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
        path.write_text(cif_text, encoding="utf-8")
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
        strongest reachable one (chosen by the app).
    mount_up, exit_surface
        Crystal direction ``[uvw]`` or plane normal ``(hkl)`` pointing up (lab z), and the
        normal of the plate's exit surface, which is along the beam at zero angles (the
        mount's beam direction and the plate normal). ``mount_up=None``: no mount (no
        stage angles, no scene).
    goniometer, stage, scattering_plane
        Goniometer preset (:data:`GONIOMETER_PRESETS`), stage (``shortest-path``, ``omega``,
        ``omega-chi``, ``omega-phi``), plane of the diffracted beam.
    sample_size_mm
        (width, height, thickness) of the plate in mm; the thickness is along the beam.
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
        if self.cif_text is not None and (not isinstance(self.cif_text, str) or not self.cif_text.strip()):
            raise ValueError("[phase] cif_text: must be the text of a CIF file")
        if (self.energy_kev is None) == (self.wavelength_a is None):
            raise ValueError("[beam] energy_kev, wavelength_a: give exactly one of them")
        s(self, "energy_kev", _opt_positive(self.energy_kev, "[beam] energy_kev"))
        s(self, "wavelength_a", _opt_positive(self.wavelength_a, "[beam] wavelength_a"))
        for name, key in (("reflection", "[mount] reflection"), ("mount_up", "[mount] up"),
                          ("exit_surface", "[mount] exit_surface"), ("lens", "[lens] file")):
            s(self, name, _opt_str(getattr(self, name), key))
        if self.exit_surface is not None and self.mount_up is None:
            raise ValueError("[mount] exit_surface: needs [mount] up as well")
        O.choice(self.goniometer, "[goniometer] preset", GONIOMETER_PRESETS)
        O.choice(self.stage, "[goniometer] stage", O.STAGES)
        O.choice(self.scattering_plane, "[goniometer] scattering_plane", O.SCATTERING_PLANES)
        s(self, "sample_size_mm", _triple(self.sample_size_mm, "[sample] size_mm"))
        s(self, "density", _opt_positive(self.density, "[sample] density"))
        if self.two_theta_range is not None:
            s(self, "two_theta_range", O.value_range(self.two_theta_range, "[beam] two_theta_range",
                                                     lo_bound=0.0, hi_bound=180.0))
        if self.lens is not None and self.lens_table is not None:
            raise ValueError("[lens] file, table: give one of them, not both")
        if self.lens_table is not None and not isinstance(self.lens_table, Mapping):
            raise ValueError(f"[lens] table: must be a table, got {self.lens_table!r}")
        s(self, "lens_distance_mm", _opt_positive(self.lens_distance_mm, "[lens] distance_mm"))
        s(self, "lens_magnification", _opt_positive(self.lens_magnification, "[lens] magnification"))
        has_lens = self.lens is not None or self.lens_table is not None
        if has_lens and (self.lens_distance_mm is None) == (self.lens_magnification is None):
            raise ValueError("[lens] distance_mm, magnification: give exactly one with a lens")
        if not has_lens and (self.lens_distance_mm is not None or self.lens_magnification is not None):
            raise ValueError("[lens] distance_mm, magnification: need a lens (file or table)")
        s(self, "solution", O.choice(O.positive_int(self.solution, "[goniometer] solution",
                                                    allow_zero=True), "[goniometer] solution", (0, 1)))
        s(self, "cells", _triple(self.cells, "[display] cells", integer=True))
        s(self, "bonds", O.boolean(self.bonds, "[display] bonds"))
        s(self, "polyhedra", O.boolean(self.polyhedra, "[display] polyhedra"))
        s(self, "compact", O.boolean(self.compact, "[display] compact"))
        s(self, "beam_size_mm", _positive_pair(self.beam_size_mm, "[display] beam_size_mm"))
        s(self, "detector_distance_mm",
          _opt_positive(self.detector_distance_mm, "[display] detector_distance_mm"))
        lo, hi = O.value_range(self.sweep_energy_kev, "[sweep] energy_kev", lo_bound=0.0)
        O.positive(lo, "[sweep] energy_kev")
        s(self, "sweep_energy_kev", (lo, hi))
        s(self, "sweep_points", O.positive_int(self.sweep_points, "[sweep] points"))
        if self.sweep_points < 2:
            raise ValueError(f"[sweep] points: must be >= 2, got {self.sweep_points}")

    # ------------------------------------------------------------------ derived values
    def replace(self, **changes: Any) -> "Session":
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    @property
    def thickness_mm(self) -> float:
        """The plate thickness along the beam (mm): the third of ``sample_size_mm``."""
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
        reflection (if any), thickness, orientation and lens (``xrdflow.sweep(**kw)``)."""
        refl = self.reflection if reflection == "session" else reflection
        kw: dict[str, Any] = dict(phase=self.phase_source(), energy_kev=self.sweep_energies(),
                                  thickness_mm=self.thickness_mm)
        if refl is not None:
            kw["reflections"] = [refl]
            kw.update(self._orientation_kwargs())
        if self.density is not None:
            kw["density"] = self.density
        if self.two_theta_range is not None:
            kw["two_theta_range"] = tuple(self.two_theta_range)
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
        out["Reflection"] = self.reflection or "strongest reachable"
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
    if raw["version"] != SESSION_VERSION:
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

    Relative paths stay relative when the file goes to the folder they resolve against;
    written elsewhere, they are made absolute so the file still finds them.
    """
    path = Path(path)
    folder = path.resolve().parent
    changes: dict[str, Any] = {}
    if session.base_dir is not None and Path(session.base_dir).resolve() != folder:
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
