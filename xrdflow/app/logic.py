"""What the planner app computes, as plain functions (no streamlit: unit-testable).

The page (:mod:`xrdflow.app.streamlit_app`) only collects inputs into a
:class:`xrdflow.session.Session` and shows what these functions return:

- :func:`parse_cif_upload`, :func:`parse_lens_upload`: check an uploaded file (size,
  parsed by pymatgen / tomllib only, never unpickled) and return its text or table, or a
  one-line ``ValueError`` a user can act on;
- :func:`reflection_choices`: the reflections that diffract inside the 2theta range at the
  energy, strongest first; with a mount, for each family the member the stage reaches with
  the shortest path through the plate;
- :func:`compute`: the plan, the energy sweep, the 3D scene, the reflection table, the
  headline numbers and the warnings, as one :class:`Result`;
- figures (:func:`attenuation_figure`, :func:`transmission_figure`) and downloads
  (:func:`report_pdf`, :func:`gltf`, :func:`netcdf`, :func:`csv`, :func:`session_toml`).

Expensive pieces are cached in memory keyed by the session (an LRU cache of a few
entries); the app adds streamlit's cache keyed by the session's TOML text.
"""

from __future__ import annotations

import logging
import math
import tempfile
import tomllib
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..session import MAX_FAMILIES, ReflectionChoice, Session, session_to_text
from ..session import _candidates, _choice_key

__all__ = ["CIF_SIZE_LIMIT", "LENS_SIZE_LIMIT", "SESSION_SIZE_LIMIT", "THICK_TRANSMISSION", "MAX_FAMILIES", "CifUpload",
           "ReflectionChoice", "Result", "parse_cif_upload", "parse_lens_upload",
           "parse_session_upload",
           "reflection_choices", "match_choice", "compute", "attenuation_figure", "transmission_figure",
           "report_pdf", "gltf", "netcdf", "csv", "session_toml"]

_log = logging.getLogger(__name__)

#: largest CIF upload accepted (bytes)
CIF_SIZE_LIMIT = 2_000_000
#: largest lens file upload accepted (bytes)
LENS_SIZE_LIMIT = 200_000
#: largest session file upload accepted (bytes): an embedded CIF and lens, and the rest
SESSION_SIZE_LIMIT = CIF_SIZE_LIMIT + LENS_SIZE_LIMIT + 100_000
#: below this transmission the sample is called too thick
THICK_TRANSMISSION = 1e-3


# ------------------------------------------------------------------------------ uploads
@dataclass(frozen=True)
class CifUpload:
    """A CIF upload that pymatgen read: the phase label (file stem), its text and formula."""

    label: str
    text: str
    formula: str

    def session(self, base: Session) -> Session:
        """``base`` with this CIF embedded as its phase."""
        return base.replace(phase=self.label, cif_text=self.text, reflection=None)


def _text_of(data: bytes, name: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise ValueError(f'{what} "{name}" could not be read: not a text file') from None


def parse_cif_upload(data: bytes, name: str) -> CifUpload:
    """Check and read an uploaded CIF (bytes and file name).

    Raises ``ValueError`` with one line: too large (over :data:`CIF_SIZE_LIMIT`), empty, or
    ``CIF "x.cif" could not be read: <reason>``.
    """
    if len(data) > CIF_SIZE_LIMIT:
        raise ValueError(f'CIF "{name}" is too large ({len(data) / 1e6:.1f} MB; the limit is '
                         f'{CIF_SIZE_LIMIT / 1e6:g} MB)')
    text = _text_of(data, name, "CIF").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f'CIF "{name}" could not be read: the file is empty')
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser.from_str(text).parse_structures(primitive=False)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds on a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f'CIF "{name}" could not be read: {reason}') from None
    if not structures:
        raise ValueError(f'CIF "{name}" could not be read: it holds no crystal structure')
    label = Path(name).stem or "uploaded"
    formula = _check_phase(structures[0], text, label, name)
    return CifUpload(label=label, text=text, formula=formula)


def _check_phase(structure, text: str, label: str, name: str) -> str:
    """Read the CIF as the planner will (xrdflow's phase loader: the embedded file), check its
    species are elements with scattering tables, its composition and density; the formula."""
    from pymatgen.core import Element, Species
    from pymatgen.core.periodic_table import DummySpecies

    from .._phases import load_phase
    from .._scattering import _chantler_energies
    from ..session import _cif_file

    bad = sorted({str(sp) for sp in structure.composition.elements
                  if isinstance(sp, DummySpecies) or not isinstance(sp, (Element, Species))})
    if bad:
        raise ValueError(f'CIF "{name}" could not be read: {", ".join(bad)} is not a chemical '
                         f'element (a dummy or unknown atom type)')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            phase = load_phase(_cif_file(label, text))
            elements = sorted({getattr(sp, "element", sp).symbol
                               for sp in phase.composition.elements})
            for el in elements:
                _chantler_energies(el)
            density = float(phase.density)
            formula = phase.composition.reduced_formula
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises: one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f'CIF "{name}" could not be read: {reason.removeprefix("phase: ")}') from None
    if not (math.isfinite(density) and density > 0):
        raise ValueError(f'CIF "{name}" could not be read: its density is {density!r}')
    return formula


def parse_lens_upload(data: bytes, name: str) -> dict[str, Any]:
    """Check and read an uploaded objective-lens TOML file; returns its table.

    Raises ``ValueError`` with one line naming the file (and the key, for a bad entry).
    """
    if len(data) > LENS_SIZE_LIMIT:
        raise ValueError(f'lens file "{name}" is too large ({len(data) / 1e3:.0f} kB; the limit '
                         f'is {LENS_SIZE_LIMIT / 1e3:g} kB)')
    text = _text_of(data, name, "lens file")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f'lens file "{name}" could not be read: not valid TOML ({exc})') from None
    from .._crl import read_lens

    try:
        read_lens(table)
    except ValueError as exc:
        raise ValueError(f'lens file "{name}": {str(exc).removeprefix("lens: ")}') from None
    return table


def parse_session_upload(data: bytes, name: str) -> Session:
    """Check and read an uploaded session file (bytes and file name).

    The size is checked before anything is decoded (:data:`SESSION_SIZE_LIMIT`); the session
    is checked as :func:`xrdflow.session.session_from_text` does (every key, the embedded
    lens as :func:`parse_lens_upload` does), and an embedded CIF as :func:`parse_cif_upload`
    does (size, pymatgen and xrdflow's phase loader). Raises ``ValueError`` with one line
    naming the file and the key (``s.toml: [phase] cif_text: ...``).
    """
    from ..session import session_from_text

    if len(data) > SESSION_SIZE_LIMIT:
        raise ValueError(f'{name}: the session file is too large ({len(data) / 1e6:.1f} MB; the '
                         f'limit is {SESSION_SIZE_LIMIT / 1e6:g} MB)')
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not a text (UTF-8) session file") from None
    session = session_from_text(text, source=name)
    if session.cif_text is not None:
        try:
            parse_cif_upload(session.cif_text.encode("utf-8"), f"{session.phase}.cif")
        except ValueError as exc:
            raise ValueError(f"{name}: [phase] cif_text: {exc}") from None
    return session


# ----------------------------------------------------------------------- reflections
def reflection_choices(session: Session) -> list[ReflectionChoice]:
    """The reflections to offer: every family that diffracts inside the 2theta range at the
    session's energy, strongest first (the first is the default, the one
    :meth:`Session.resolved` fills in), at most :data:`MAX_FAMILIES`. With a mount each
    family is one exact member: the one the stage brings into the Bragg condition with the
    shortest path through the plate (for other stages, the first member with a solution).
    (:meth:`xrdflow.session.Session.reflection_choices`: core code, no streamlit.)"""
    return session.reflection_choices()


def match_choice(reflection: str, choices: list[ReflectionChoice]) -> ReflectionChoice | None:
    """The choice with the same indices as ``reflection`` (``"0 0 4"`` is ``"004"``), or None
    (also for text that is not Miller indices)."""
    from .._lattice import parse_indices, three_indices

    try:
        kind, idx = parse_indices(reflection)
        hkl = tuple(int(v) for v in three_indices(kind, idx, reflection))
    except ValueError:
        return None
    return next((c for c in choices if c.hkl == hkl), None)


# ---------------------------------------------------------------------------- compute
@dataclass
class Result:
    """What :func:`compute` returns for one session (datasets are computed, not lazy)."""

    session: Session
    reflection: str
    plan: Any
    sweep: Any
    table: Any
    headline: dict[str, Any]
    choices: list[ReflectionChoice]
    scene: Any = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def warnings(self) -> list[str]:
        """The texts of the warnings and errors."""
        return [text for level, text in self.messages if level in ("warning", "error")]


def _table(ds, families: list[str], attenuation_length: float, thickness: float):
    """The reflection table (pandas) of the candidates' plan dataset (one row a family)."""
    import pandas as pd

    row = ds.isel(energy=0)
    n = row.sizes["reflection"]
    names = [a for a in ds.attrs.get("stage_angles", []) if a in row]
    f2 = row.structure_factor_sq.values.reshape(-1)[:n] if row.structure_factor_sq.ndim else \
        np.full(n, float(row.structure_factor_sq))
    lo, hi = ds.attrs.get("two_theta_range", [0.0, 180.0])
    tt = row.two_theta.values
    cols: dict[str, Any] = {
        "Reflection": [str(v) for v in row.hkl.values],
        "Family": families,
        "d (Å)": row.d_spacing.values,
        "2θ (°)": tt,
        "|F|²": f2,
        "Multiplicity": row.multiplicity.values.astype(int),
        "Intensity": row.intensity.values,
        "Reachable": [bool(np.isfinite(t) and lo <= t <= hi) for t in tt],
    }
    for a in names:
        for s in (0, 1):
            cols[f"{a} sol {s} (°)"] = row[a].values[:, s]
    if "path_length" in row:
        for s in (0, 1):
            cols[f"Path sol {s} (mm)"] = row.path_length.values[:, s]
        for s in (0, 1):
            cols[f"Transmission sol {s}"] = row.path_transmission.values[:, s]
    else:
        cols["Transmission"] = np.full(n, math.exp(-thickness / attenuation_length))
    return pd.DataFrame(cols)


def _scene(result: Result, ds) -> None:
    """Build the 3D scene into ``result`` (or a message saying why there is none)."""
    s = result.session
    if not s.has_mount:
        result.messages.append(("info", "No 3D view: give the mount (up direction) to orient "
                                        "the crystal."))
        return
    names = list(ds.attrs.get("stage_angles", []))
    solved = [sol for sol in (0, 1) if names and np.isfinite(float(ds[names[0]].values[0, 0, sol]))]
    if not solved:
        return  # the no-solution warning is already there
    solution = s.solution if s.solution in solved else solved[0]
    if solution != s.solution:
        result.messages.append(("info", f"Solution {s.solution} has no stage angles: the 3D view "
                                        f"shows solution {solution}."))
    kw = s.scene_kwargs()
    kw.update(reflection=result.reflection, solution=solution)
    try:
        from ..scene import scene_from_plan

        result.scene = scene_from_plan(ds, s.phase_source(), **kw)
    except ImportError as exc:
        result.messages.append(("warning", f"3D view not available: {exc}"))
    except ValueError as exc:
        result.messages.append(("warning", f"3D view: {exc}"))
    except Exception as exc:  # noqa: BLE001 - the view is optional: keep the plan on the page
        _log.exception("building the 3D scene failed")
        result.messages.append(("error", f"3D view failed ({type(exc).__name__}: {exc}); the "
                                         f"numbers above are not affected. Please report this."))


@lru_cache(maxsize=8)
def _plan_and_sweep(session: Session, base_dir: str | None):
    import xrdflow

    ds = xrdflow.plan(**session.plan_kwargs()).compute()
    sw = xrdflow.sweep(**session.sweep_kwargs()).compute()
    return ds, sw


def _stage_angles(ds) -> dict[int, dict[str, float]]:
    names = [a for a in ds.attrs.get("stage_angles", []) if a in ds]
    out = {}
    for sol in range(ds.sizes.get("solution", 0)):
        vals = {a: float(ds[a].values[0, 0, sol]) for a in names}
        if vals and all(np.isfinite(v) for v in vals.values()):
            out[sol] = vals
    return out


def compute(session: Session) -> Result:
    """Everything the page shows for ``session``.

    Raises ``ValueError`` (naming the parameter) for inputs the library refuses; problems
    of the experiment itself (no solution, unreachable, too thick) are ``messages``.
    """
    choices = reflection_choices(session)
    run = session.resolved()  # the strongest reachable reflection if none is given
    refl = run.reflection
    ds, sw = _plan_and_sweep(run, run.base_dir)
    row = ds.isel(energy=0, reflection=0)
    two_theta = float(row.two_theta)
    trans = float(row.transmission) if "transmission" in row else math.nan
    att = float(row.attenuation_length)
    angles = _stage_angles(ds)
    match = match_choice(refl, choices)
    family = match.family if match is not None else str(row.reflection.values)
    headline: dict[str, Any] = dict(
        reflection=str(row.hkl.values), family=family,
        energy_kev=float(row.energy), wavelength_a=float(row.wavelength),
        two_theta_deg=two_theta, d_spacing_a=float(row.d_spacing), transmission=trans,
        attenuation_length_mm=att, stage_angles=angles)
    if "path_length" in row:
        headline["path_length_mm"] = {s: float(row.path_length.values[s]) for s in angles}
        headline["path_transmission"] = {s: float(row.path_transmission.values[s]) for s in angles}
    if "magnification" in row:
        headline["lens"] = {k: float(row[k]) for k in ("focal_length_mm", "d1_mm", "d2_mm",
                                                        "magnification") if k in row}
    _, cand = _candidates(_choice_key(session), session.base_dir)
    table = _table(cand, [c.family for c in choices], att, session.thickness_mm) if cand is not None else None
    result = Result(session=run, reflection=refl, plan=ds, sweep=sw, table=table,
                    headline=headline, choices=choices)
    lo, hi = session.two_theta_range or (0.0, 180.0)
    if not np.isfinite(two_theta):
        result.messages.append(("error", f"{refl} does not diffract at {session.energy:.4g} keV "
                                         f"(λ > 2d): raise the energy."))
    elif not lo <= two_theta <= hi:
        result.messages.append(("warning", f"{refl} is unreachable: 2θ = {two_theta:.3f}° is "
                                           f"outside the 2θ range {lo:g}–{hi:g}°."))
    if session.has_mount and not angles:
        plane = "" if session.stage == "omega" else f", {session.scattering_plane} scattering"
        result.messages.append(("warning", f"No stage solution: the {session.stage} stage cannot "
                                           f"bring {refl} into the Bragg condition with this "
                                           f"mount{plane}. Try another reflection, mount or "
                                           f"stage."))
    if np.isfinite(trans) and trans < THICK_TRANSMISSION:
        result.messages.append(("warning", f"Sample too thick: transmission {trans:.2e} through "
                                           f"{session.thickness_mm:g} mm (attenuation length "
                                           f"{att:.3g} mm): use a thinner sample or a higher "
                                           f"energy."))
    lens = headline.get("lens")
    if lens is not None and not np.isfinite(lens.get("magnification", math.nan)):
        result.messages.append(("warning", "The objective lens cannot image at this energy and "
                                           "distance: change the distance or the energy."))
    _scene(result, ds)
    return result


# ---------------------------------------------------------------------------- figures
def attenuation_figure(result: Result, *, height: int = 330):
    """Attenuation length (log scale) against energy, the chosen energy marked (plotly)."""
    import plotly.graph_objects as go

    sw = result.sweep
    e = sw.energy.values
    fig = go.Figure(go.Scatter(x=e, y=sw.attenuation_length.values, mode="lines",
                               name="attenuation length"))
    e0 = result.headline["energy_kev"]
    att = result.headline["attenuation_length_mm"]
    fig.add_trace(go.Scatter(x=[e0], y=[att], mode="markers", marker=dict(size=10),
                             name=f"{e0:g} keV: {att:.3g} mm"))
    fig.add_vline(x=e0, line_dash="dot")
    fig.add_hline(y=result.session.thickness_mm, line_dash="dash",
                  annotation_text="sample thickness")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title="Attenuation length vs energy", xaxis_title="Energy (keV)",
                      yaxis_title="Attenuation length (mm)", yaxis_type="log", showlegend=True,
                      legend=dict(x=0.02, y=0.98))
    return fig


def transmission_figure(result: Result, *, height: int = 330):
    """Transmission along the beam against thickness at the energy, the sample's marked."""
    import plotly.graph_objects as go

    att = result.headline["attenuation_length_mm"]
    t0 = result.session.thickness_mm
    t = np.linspace(0.0, max(3.0 * t0, 3.0 * att), 200)
    fig = go.Figure(go.Scatter(x=t, y=np.exp(-t / att), mode="lines", name="transmission"))
    tr = math.exp(-t0 / att)
    fig.add_trace(go.Scatter(x=[t0], y=[tr], mode="markers", marker=dict(size=10),
                             name=f"{t0:g} mm: {tr:.4g}"))
    fig.add_vline(x=t0, line_dash="dot")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title=f"Transmission vs thickness at {result.headline['energy_kev']:g} keV",
                      xaxis_title="Thickness along the beam (mm)", yaxis_title="Transmission",
                      yaxis_range=[0, 1.02], legend=dict(x=0.6, y=0.98))
    return fig


# -------------------------------------------------------------------------- downloads
def report_pdf(result: Result) -> bytes:
    """The PDF report of the plan (:func:`xrdflow.report.report_pdf_bytes`)."""
    from ..report import report_pdf_bytes

    return report_pdf_bytes(result.plan, phase=result.session.phase_source(), scene=result.scene,
                            energy_sweep=result.sweep, inputs=result.session.inputs())


def gltf(result: Result) -> bytes:
    """The 3D scene as binary glTF (.glb); ``ValueError`` without a scene."""
    if result.scene is None:
        raise ValueError("no 3D scene to export: give a mount and a reflection with a solution")
    from ..scene import gltf_bytes

    return gltf_bytes(result.scene, binary=True)


def netcdf(result: Result) -> bytes:
    """The energy sweep as NetCDF bytes (written with :func:`xrdflow.write_sweep`)."""
    import xrdflow

    with tempfile.TemporaryDirectory(prefix="xrdflow-app-") as tmp:
        path = Path(tmp) / "sweep.nc"
        xrdflow.write_sweep(result.sweep, path)
        return path.read_bytes()


def csv(result: Result) -> bytes:
    """The reflection table as CSV (UTF-8)."""
    if result.table is None:
        return b""
    return result.table.to_csv(index=False).encode("utf-8")


def session_toml(session: Session) -> bytes:
    """The session file (TOML, UTF-8)."""
    return session_to_text(session).encode("utf-8")
