"""The xrdflow experiment planner page: ``xrdflow app`` (or ``streamlit run`` this file).

The sidebar collects the inputs of one experiment into a :class:`xrdflow.session.Session`;
the main area shows what :func:`xrdflow.app.logic.compute` returns: the Bragg angle and
transmission, the stage angles of every solution, warnings, the absorption plots, the
reflection table, the interactive 3D view and the downloads. Every input error becomes a
message on the page (the library's ``ValueError`` text), never a traceback.

Computations are cached on the session's TOML text, so a rerun that changes nothing
expensive is fast; the downloads (PDF report, glTF, NetCDF, CSV) are only made when their
button is clicked.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from xrdflow import options as O
from xrdflow._phases import BUILTIN_PHASES
from xrdflow.app import logic
from xrdflow.session import (CELLS_RANGE, DENSITY_RANGE, ENERGY_RANGE_KEV, GONIOMETER_PRESETS,
                             LENS_VALUE_RANGE, SIZE_RANGE_MM, SWEEP_POINTS_RANGE,
                             WAVELENGTH_RANGE_A, Session, session_from_text, session_to_text)

try:
    import streamlit as st
except ImportError:  # importable without the app extra (pytest --doctest-modules imports it)
    st = None

UPLOAD_CIF = "Upload CIF…"
STAGES = O.STAGES
DEFAULTS = Session()

_log = logging.getLogger(__name__)

#: characters markdown (and streamlit's $...$ maths) would interpret
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~$])")


def _md(text: Any) -> str:
    """``text`` (a file name, a label from a shared session) escaped for ``st.markdown``."""
    return _MARKDOWN.sub(r"\\\1", str(text))


# --------------------------------------------------------------------------- caching
def _cache(kind: str, **options: Any):
    """``st.cache_resource`` / ``st.cache_data`` (the function as is without streamlit)."""
    def decorate(func):
        return func if st is None else getattr(st, f"cache_{kind}")(**options)(func)
    return decorate


@_cache("resource", max_entries=32, show_spinner=False)
def _compute(text: str, base_dir: str | None) -> logic.Result:
    return logic.compute(session_from_text(text, base_dir=base_dir))


@_cache("resource", max_entries=32, show_spinner=False)
def _choices(text: str, base_dir: str | None) -> list[logic.ReflectionChoice]:
    return logic.reflection_choices(session_from_text(text, base_dir=base_dir))


@_cache("resource", max_entries=8, show_spinner=False)
def _scene_figure(text: str, base_dir: str | None):
    from xrdflow.scene import to_plotly

    return to_plotly(_compute(text, base_dir).scene, height=600)


# --------------------------------------------------------------------- session state
def _state_from_session(s: Session) -> dict[str, Any]:
    """Widget values (by key) that show ``s``."""
    state: dict[str, Any] = {
        "beam_unit": "Energy" if s.energy_kev is not None else "Wavelength",
        "sample_width": s.sample_size_mm[0], "sample_height": s.sample_size_mm[1],
        "thickness_mm": s.sample_size_mm[2], "density": s.density or 0.0,
        "tt_min": (s.two_theta_range or (0.0, 180.0))[0],
        "tt_max": (s.two_theta_range or (0.0, 180.0))[1],
        "mount_up": s.mount_up or "", "exit_surface": s.exit_surface or "",
        "goniometer": s.goniometer, "stage": s.stage, "scattering_plane": s.scattering_plane,
        "solution": s.solution, "cells_a": s.cells[0], "cells_b": s.cells[1],
        "cells_c": s.cells[2], "bonds": s.bonds, "polyhedra": s.polyhedra,
        "compact": s.compact, "beam_w": s.beam_size_mm[0], "beam_h": s.beam_size_mm[1],
        "sweep_lo": s.sweep_energy_kev[0], "sweep_hi": s.sweep_energy_kev[1],
        "sweep_points": s.sweep_points,
    }
    if s.energy_kev is not None:
        state["energy_kev"] = s.energy_kev
    else:
        state["wavelength_a"] = s.wavelength_a
    if s.cif_text is not None:
        state["phase"] = UPLOAD_CIF
        state["cif"] = logic.CifUpload(s.phase, s.cif_text, "")
    elif s.phase in BUILTIN_PHASES:
        state["phase"] = s.phase
    if s.reflection is not None:
        state["reflection_loaded"] = s.reflection
    if s.lens_table is not None:
        state["lens_table"] = dict(s.lens_table)
    if s.lens_distance_mm is not None or s.lens_magnification is not None:
        state["lens_mode"] = "distance" if s.lens_distance_mm is not None else "magnification"
        state["lens_value"] = s.lens_distance_mm or s.lens_magnification
    return state


def _init_state() -> None:
    for key, value in _state_from_session(DEFAULTS).items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("energy_kev", 17.0)
    st.session_state.setdefault("wavelength_a", 0.7293)
    st.session_state.setdefault("lens_mode", "distance")
    st.session_state.setdefault("lens_value", 5000.0)


def _load_session_upload() -> None:
    """Apply an uploaded session file once (before the widgets it sets are drawn)."""
    up = st.sidebar.file_uploader("Load a session (TOML)", type=["toml"], key="session_file",
                                  help="A session saved with the 'Session (TOML)' button.")
    if up is None:  # emptied: the same file loads again when it is uploaded again
        st.session_state.pop("session_loaded", None)
        return
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    if st.session_state.get("session_loaded") == digest:
        return
    st.session_state["session_loaded"] = digest
    st.session_state.pop("load_error", None)
    try:  # size first, then every key, the embedded CIF and lens
        s = logic.parse_session_upload(data, up.name)
    except ValueError as exc:
        st.session_state["load_error"] = str(exc)
        return
    if s.cif_text is None and s.phase not in BUILTIN_PHASES:
        st.session_state["load_error"] = (f"{up.name}: the phase is the CIF file {s.phase}, which "
                                          "an uploaded session cannot reach: choose 'Upload CIF…' "
                                          "and upload it (the saved session then embeds it)")
        return
    note = None
    if s.lens is not None:
        note = (f"{up.name}: [lens] file = {s.lens} cannot be read from an upload: upload the "
                "lens file under 'Objective lens'")
        s = s.replace(lens=None, lens_distance_mm=None, lens_magnification=None)
    for key in ("reflection", "reflection_value", "reflection_extra", "cif", "lens_table"):
        st.session_state.pop(key, None)
    st.session_state.update(_state_from_session(s))
    if note:
        st.session_state["load_error"] = note


# ----------------------------------------------------------------------------- inputs
def _phase_inputs(sb) -> dict[str, Any]:
    sb.selectbox("Phase", list(BUILTIN_PHASES) + [UPLOAD_CIF], key="phase",
                 help="A built-in crystal, or your own CIF file.")
    if st.session_state["phase"] != UPLOAD_CIF:
        return {"phase": st.session_state["phase"], "cif_text": None}
    up = sb.file_uploader("CIF file", type=["cif"], key="cif_file",
                          help=f"Up to {logic.CIF_SIZE_LIMIT / 1e6:g} MB; read by pymatgen.")
    if up is None:
        st.session_state.pop("cif_digest", None)
    else:
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        if st.session_state.get("cif_digest") != digest:  # read each upload once
            st.session_state["cif_digest"] = digest
            try:
                st.session_state["cif"] = logic.parse_cif_upload(data, up.name)
                st.session_state.pop("cif_error", None)
            except ValueError as exc:
                st.session_state.pop("cif", None)
                st.session_state["cif_error"] = str(exc)
    cif = st.session_state.get("cif")
    if cif is None:
        raise ValueError(st.session_state.get("cif_error", "Upload a CIF file to use your own "
                                                           "crystal, or choose a built-in phase."))
    return {"phase": cif.label, "cif_text": cif.text}


def _lens_inputs(sb) -> dict[str, Any]:
    up = sb.file_uploader("Objective lens (TOML)", type=["toml"], key="lens_file",
                          help="A CRL description, e.g. the ID06 objective.")
    if up is None:  # emptied: the same file is read again when it is uploaded again
        st.session_state.pop("lens_digest", None)
    else:
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        if st.session_state.get("lens_digest") != digest:  # read each upload once
            st.session_state.pop("lens_table", None)
            st.session_state["lens_table"] = logic.parse_lens_upload(data, up.name)
            st.session_state["lens_digest"] = digest
    if st.session_state.get("lens_table") is None:
        return {}
    if sb.button("Remove the lens", key="lens_remove"):
        st.session_state.pop("lens_table", None)
        return {}
    mode = sb.radio("Lens condition", ["distance", "magnification"], key="lens_mode",
                    format_func={"distance": "Sample-detector distance (mm)",
                                 "magnification": "Magnification"}.get)
    value = sb.number_input("Sample-detector distance (mm)" if mode == "distance"
                            else "Magnification", min_value=LENS_VALUE_RANGE[0],
                            max_value=LENS_VALUE_RANGE[1], key="lens_value")
    return {"lens_table": st.session_state["lens_table"],
            "lens_distance_mm": value if mode == "distance" else None,
            "lens_magnification": value if mode == "magnification" else None}


def _base_session(sb):
    """The session from every input but the reflection (raises ValueError on a bad one), and
    the sidebar's slot for the reflection list (under the beam: it depends on every input,
    so it is drawn last, in its place)."""
    kw: dict[str, Any] = {}
    sb.header("Crystal")
    kw.update(_phase_inputs(sb))
    density = sb.number_input("Density (g/cm³; 0 = the crystal's)", min_value=0.0,
                              max_value=DENSITY_RANGE[1], key="density", format="%.4f")
    kw["density"] = density or None
    sb.header("Beam")
    unit = sb.radio("Give the beam as", ["Energy", "Wavelength"], key="beam_unit",
                    horizontal=True)
    if unit == "Energy":
        kw["energy_kev"] = sb.number_input("Energy (keV)", min_value=ENERGY_RANGE_KEV[0],
                                           max_value=ENERGY_RANGE_KEV[1], key="energy_kev",
                                           format="%.4f")
        kw["wavelength_a"] = None
    else:
        kw["wavelength_a"] = sb.number_input("Wavelength (Å)", min_value=WAVELENGTH_RANGE_A[0],
                                             max_value=WAVELENGTH_RANGE_A[1], key="wavelength_a",
                                             format="%.5f")
        kw["energy_kev"] = None
    c1, c2 = sb.columns(2)
    lo = c1.number_input("2θ min (°)", min_value=0.0, max_value=180.0, key="tt_min")
    hi = c2.number_input("2θ max (°)", min_value=0.0, max_value=180.0, key="tt_max")
    kw["two_theta_range"] = None if (lo, hi) == (0.0, 180.0) else (lo, hi)
    slot = sb.container(key="reflection_slot")
    sb.header("Sample")
    c1, c2, c3 = sb.columns(3)
    lo_mm, hi_mm = SIZE_RANGE_MM
    w = c1.number_input("Width (mm)", min_value=lo_mm, max_value=hi_mm, key="sample_width",
                        format="%.3f")
    h = c2.number_input("Height (mm)", min_value=lo_mm, max_value=hi_mm, key="sample_height",
                        format="%.3f")
    t = c3.number_input("Thickness (mm)", min_value=lo_mm, max_value=hi_mm, key="thickness_mm",
                        format="%.3f", help="Along the plate normal (the exit surface's): along "
                                            "the beam at zero angles.")
    kw["sample_size_mm"] = (w, h, t)
    sb.header("Mount and goniometer")
    up = sb.text_input("Up direction", key="mount_up",
                       help="Crystal direction [uvw] or plane normal (hkl) along the vertical "
                            "(goniometer) axis, e.g. (111). Empty: no mount.").strip()
    exit_surface = sb.text_input("Exit surface", key="exit_surface",
                                 help="Normal of the plate's exit surface, (hkl) or [uvw]: along "
                                      "the beam at zero angles. Empty: up × [001].").strip()
    kw["mount_up"] = up or None
    kw["exit_surface"] = (exit_surface or None) if up else None
    kw["stage"] = sb.selectbox("Stage", STAGES, key="stage",
                               help="shortest-path: every circle free, the shortest path "
                                    "through the plate.")
    kw["goniometer"] = sb.selectbox("Goniometer", GONIOMETER_PRESETS, key="goniometer")
    kw["scattering_plane"] = sb.radio("Scattering plane", ["vertical", "horizontal"],
                                      key="scattering_plane", horizontal=True)
    sb.header("Objective lens")
    kw.update(_lens_inputs(sb))
    sb.header("3D view")
    kw["solution"] = sb.radio("Solution shown", [0, 1], key="solution", horizontal=True)
    c1, c2, c3 = sb.columns(3)
    kw["cells"] = tuple(int(c.number_input(f"Cells {a}", min_value=CELLS_RANGE[0],
                                           max_value=CELLS_RANGE[1], step=1, key=f"cells_{a}"))
                        for c, a in zip((c1, c2, c3), "abc"))
    kw["bonds"] = sb.checkbox("Bonds", key="bonds")
    kw["polyhedra"] = sb.checkbox("Polyhedra", key="polyhedra")
    kw["compact"] = sb.checkbox("Compact layout", key="compact",
                                help="Instruments drawn close to the sample.")
    c1, c2 = sb.columns(2)
    kw["beam_size_mm"] = (c1.number_input("Beam width (mm)", min_value=lo_mm, max_value=hi_mm,
                                          key="beam_w", format="%.3f"),
                          c2.number_input("Beam height (mm)", min_value=lo_mm, max_value=hi_mm,
                                          key="beam_h", format="%.3f"))
    sb.header("Energy sweep")
    c1, c2, c3 = sb.columns(3)
    e_lo, e_hi = ENERGY_RANGE_KEV
    kw["sweep_energy_kev"] = (c1.number_input("From (keV)", min_value=e_lo, max_value=e_hi,
                                              key="sweep_lo"),
                              c2.number_input("To (keV)", min_value=e_lo, max_value=e_hi,
                                              key="sweep_hi"))
    kw["sweep_points"] = int(c3.number_input("Points", min_value=SWEEP_POINTS_RANGE[0],
                                             max_value=SWEEP_POINTS_RANGE[1], step=1,
                                             key="sweep_points"))
    return Session(**kw), slot


def _reflection_input(sb, base: Session) -> Session:
    text = session_to_text(base)
    choices = _choices(text, base.base_dir)
    if not choices:
        return base
    values = [c.value for c in choices]
    labels = [c.label for c in choices]
    loaded = st.session_state.pop("reflection_loaded", None)
    if loaded is not None:  # from a session file, once: "0 0 4" is the list's "004"
        match = logic.match_choice(loaded, choices)
        st.session_state["reflection_value"] = loaded if match is None else match.value
        st.session_state.pop("reflection", None)
        if match is None:  # a member the list does not offer: offer it as given (this phase)
            st.session_state["reflection_extra"] = (base.phase, loaded)
    extra = st.session_state.get("reflection_extra")
    if extra is not None and extra[0] == base.phase and extra[1] not in values:
        values.insert(0, extra[1])
        labels.insert(0, f"{extra[1]}  (as given)")
    value_of = dict(zip(labels, values))
    state = st.session_state
    if state.get("reflection") in value_of:  # the list's choice (this run or the last)
        value = value_of[state["reflection"]]
    else:  # the list changed (another energy, a loaded session): keep the member if offered
        value = state.get("reflection_value")
        value = value if value in values else values[0]
        state["reflection"] = labels[values.index(value)]
    label = sb.selectbox("Reflection", labels, key="reflection")
    sb.caption("Strongest first, inside the 2θ range; with a mount, the member of each family "
               "the stage reaches with the shortest path through the sample.")
    state["reflection_value"] = value_of[label]
    return base.replace(reflection=value_of[label])


# ---------------------------------------------------------------------------- outputs
def _headline(result: logic.Result, box) -> None:
    """The headline numbers, the stage angles and the lens, into the container ``box``."""
    h = result.headline
    box.markdown(f"**{_md(h['family'])}** (member {_md(h['reflection'])}) at "
                 f"{h['energy_kev']:.4g} keV "
                 f"(λ = {h['wavelength_a']:.5f} Å): **2θ = {h['two_theta_deg']:.3f}°** · "
                 f"**Transmission = {h['transmission']:.4f}** · attenuation length "
                 f"{h['attenuation_length_mm']:.4g} mm · d = {h['d_spacing_a']:.4f} Å")
    c = box.columns(4)
    c[0].metric("2θ", f"{h['two_theta_deg']:.3f}°")
    c[1].metric("Transmission", f"{h['transmission']:.4f}")
    c[2].metric("Attenuation length", f"{h['attenuation_length_mm']:.4g} mm")
    c[3].metric("d-spacing", f"{h['d_spacing_a']:.4f} Å")
    angles = h["stage_angles"]
    if angles:
        lines = []
        for sol, vals in angles.items():
            text = ", ".join(f"{k} = {v:.3f}°" for k, v in vals.items())
            if "path_length_mm" in h:
                text += (f"; path {h['path_length_mm'][sol]:.4g} mm "
                         f"(transmission {h['path_transmission'][sol]:.4f})")
            lines.append(f"- Solution {sol}: {text}")
        box.container(key="stage_angles").markdown("**Stage angles**\n\n" + "\n".join(lines))
    if "lens" in h:
        names = {"focal_length_mm": "focal length {:.4g} mm", "d1_mm": "sample–lens {:.4g} mm",
                 "d2_mm": "lens–detector {:.4g} mm", "magnification": "magnification {:.4g}"}
        box.markdown("**Objective lens**: " + ", ".join(
            names[k].format(v) for k, v in h["lens"].items() if k in names))


def _messages(result: logic.Result) -> None:
    for level, text in result.messages:
        {"error": st.error, "warning": st.warning}.get(level, st.info)(_md(text))


def _deferred(make, result: logic.Result):
    """The download's bytes, made only when the button is clicked."""
    def data() -> bytes:
        return make(result)
    return data


def _downloads(result: logic.Result, session: Session, text: str) -> None:
    """The download buttons; the files are made when a button is clicked (fast reruns)."""
    st.subheader("Downloads")
    c = st.columns(5)
    name = f"{session.phase}_{result.reflection.replace(' ', '')}"
    common = dict(on_click="ignore")
    with c[0]:
        st.download_button("Report (PDF)", _deferred(logic.report_pdf, result),
                           file_name=f"{name}_plan.pdf", mime="application/pdf",
                           key="dl_pdf", help="The plan as a PDF (made on click: a few "
                                              "seconds).", **common)
    with c[1]:
        if result.scene is not None:
            st.download_button("Scene (glTF)", _deferred(logic.gltf, result),
                               file_name=f"{name}_scene.glb", mime="model/gltf-binary",
                               key="dl_gltf", help="The 3D view for Blender or three.js.",
                               **common)
        else:
            st.caption("Scene (glTF): no 3D scene")
    with c[2]:
        st.download_button("Sweep (NetCDF)", _deferred(logic.netcdf, result),
                           file_name=f"{session.phase}_sweep.nc", mime="application/x-netcdf",
                           key="dl_netcdf", help="The energy sweep (xarray / NetCDF).", **common)
    with c[3]:
        st.download_button("Table (CSV)", _deferred(logic.csv, result),
                           file_name=f"{session.phase}_reflections.csv", mime="text/csv",
                           key="dl_csv", help="The table of reachable families.", **common)
    with c[4]:
        st.download_button("Session (TOML)", text.encode("utf-8"),
                           file_name=f"{session.phase}_session.toml",
                           mime="application/toml", key="dl_session",
                           help="Every input: load it again with 'Load a session'.", **common)


def _formats(table) -> dict[str, Any]:
    """Number formats of the reflection table's columns (the CSV keeps every digit)."""
    out: dict[str, Any] = {}
    for col in table.columns:
        if table[col].dtype.kind != "f":
            continue
        fmt = "%.4f" if col.startswith(("d ", "Transmission")) else (
            "%.1f" if col in ("|F|²", "Intensity") else "%.3f")
        out[col] = st.column_config.NumberColumn(col, format=fmt)
    return out


def _scene_view(result: logic.Result, text: str, base_dir: str | None) -> None:
    with st.expander("3D view", expanded=True):
        if result.scene is None:
            st.info("No 3D view for this plan (see the messages above).")
            return
        try:
            st.plotly_chart(_scene_figure(text, base_dir), key="scene_3d")
        except (ImportError, ValueError) as exc:
            st.warning(_md(f"3D view not available: {exc}"))


def main() -> None:
    """Draw the page."""
    if st is None:
        raise ImportError('the planner page needs streamlit: pip install -e ".[app]"')
    st.set_page_config(page_title="xrdflow planner", layout="wide")
    st.title("xrdflow experiment planner")
    st.caption("Set the crystal, beam, sample and mount in the sidebar. The page shows where "
               "the chosen reflection diffracts, how much of the beam the sample lets through, "
               "the goniometer angles that bring the reflection into the Bragg condition, and "
               "a 3D view; everything can be downloaded, and the session saved to reload later.")
    try:
        _page()
    except (ValueError, FileNotFoundError) as exc:  # an input the library refuses: its message
        st.error(_md(str(exc)))
    except MemoryError:
        _log.exception("the planner page ran out of memory")
        st.error("Not enough memory for this plan: lower the energy or the 2θ range maximum, "
                 "or use a smaller crystal cell.")
    except Exception as exc:  # noqa: BLE001 - the page never shows a traceback
        _log.exception("the planner page failed")
        st.error(_md(f"Something went wrong ({type(exc).__name__}); the details are in the "
                     f"server log. Please report this."))


def _page() -> None:
    """The sidebar and the results (raises ValueError for an input the library refuses)."""
    _init_state()
    sb = st.sidebar
    _load_session_upload()
    if "load_error" in st.session_state:
        st.error(_md(st.session_state["load_error"]))
    base, slot = _base_session(sb)
    session = _reflection_input(slot, base)
    text = session_to_text(session)
    result = _compute(text, session.base_dir)
    # the numbers first: the browser draws them while the 3D view (WebGL) is still redrawing
    _headline(result, st.container(key="headline"))
    _messages(result)
    c1, c2 = st.columns(2)
    c1.plotly_chart(logic.attenuation_figure(result), key="fig_attenuation")
    c2.plotly_chart(logic.transmission_figure(result), key="fig_transmission")
    _scene_view(result, text, session.base_dir)
    st.subheader("Reachable families (one member each)")
    if result.table is not None:
        st.dataframe(result.table, hide_index=True, key="table", column_config=_formats(result.table))
    _downloads(result, session, text)


if __name__ == "__main__":
    main()
