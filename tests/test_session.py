"""Planning sessions (xrdflow.session): the TOML layout, its checks, and the library calls."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xrdflow
from xrdflow.session import (Session, load_session, save_session, session_from_text,
                             session_to_text)

DATA = Path(__file__).parent / "data"
LENS = DATA / "lens_id06.toml"
AL_CIF = DATA / "cif" / "Al_biso.cif"

pytest.importorskip("tomli_w", reason="writing session files needs tomli-w (the app extra)")

#: a session file with every section
FULL = """\
version = 1

[phase]
name = "Al"

[beam]
energy_kev = 17.0
two_theta_range = [0.0, 40.0]

[sample]
size_mm = [1.5, 2.0, 0.3]
density = 2.7

[mount]
up = "(111)"
exit_surface = "[1-10]"
reflection = "1 1 1"

[goniometer]
preset = "dfxrm"
stage = "shortest-path"
scattering_plane = "vertical"
solution = 1

[lens]
file = "lens_id06.toml"
distance_mm = 5000.0

[display]
cells = [2, 1, 1]
bonds = false
polyhedra = true
beam_size_mm = [0.4, 0.05]
compact = false
detector_distance_mm = 300.0

[sweep]
energy_kev = [10.0, 60.0]
points = 51
"""


def test_round_trip_text_session_text():
    s = session_from_text(FULL, base_dir=DATA)
    assert session_to_text(s) == FULL
    assert session_from_text(session_to_text(s), base_dir=DATA) == s


def test_every_section_is_read():
    s = session_from_text(FULL, base_dir=DATA)
    assert s.phase == "Al" and s.cif_text is None
    assert s.energy_kev == 17.0 and s.wavelength_a is None and s.two_theta_range == (0.0, 40.0)
    assert s.sample_size_mm == (1.5, 2.0, 0.3) and s.thickness_mm == 0.3 and s.density == 2.7
    assert (s.mount_up, s.exit_surface, s.reflection) == ("(111)", "[1-10]", "1 1 1")
    assert (s.goniometer, s.stage, s.scattering_plane, s.solution) == (
        "dfxrm", "shortest-path", "vertical", 1)
    assert s.lens == "lens_id06.toml" and s.lens_distance_mm == 5000.0
    assert s.lens_source() == str(LENS)
    assert (s.cells, s.bonds, s.polyhedra, s.beam_size_mm, s.compact, s.detector_distance_mm) == (
        (2, 1, 1), False, True, (0.4, 0.05), False, 300.0)
    assert s.sweep_energy_kev == (10.0, 60.0) and s.sweep_points == 51


def test_minimal_file_and_wavelength():
    s = session_from_text('version = 1\n[phase]\nname = "Mg"\n[beam]\nwavelength_a = 0.5\n')
    assert s.energy_kev is None and s.wavelength_a == 0.5
    assert not s.has_mount  # no [mount] up in the file: no mount
    kw = s.plan_kwargs()
    assert kw["wavelength_a"] == 0.5 and "energy_kev" not in kw and "mount" not in kw
    assert session_from_text(session_to_text(s)) == s


@pytest.mark.parametrize("change, where", [
    (("energy_kev = 17.0", "energy_kev = -1.0"), "[beam] energy_kev"),
    (("energy_kev = 17.0", "energy = 17.0"), "[beam] energy"),
    (("two_theta_range = [0.0, 40.0]", "two_theta_range = [40.0, 10.0]"), "[beam] two_theta_range"),
    (("size_mm = [1.5, 2.0, 0.3]", "size_mm = [1.5, 2.0]"), "[sample] size_mm"),
    (("density = 2.7", "density = 0"), "[sample] density"),
    (('preset = "dfxrm"', 'preset = "kappa"'), "[goniometer] preset"),
    (('stage = "shortest-path"', 'stage = "spin"'), "[goniometer] stage"),
    (("solution = 1", "solution = 2"), "[goniometer] solution"),
    (("distance_mm = 5000.0", "distance_mm = 5000.0\nmagnification = 3.0"), "[lens] distance_mm"),
    (("bonds = false", "bonds = 0"), "[display] bonds"),
    (("cells = [2, 1, 1]", "cells = [2, 0, 1]"), "[display] cells"),
    (("points = 51", "points = 1"), "[sweep] points"),
    (('name = "Al"', 'name = "Unobtainium"'), "[phase] name"),
    (("[sweep]", "[sweeps]"), "[sweeps]"),
    (("version = 1", "version = 2"), "version"),
])
def test_bad_key_or_value_names_file_and_key(change, where):
    text = FULL.replace(*change)
    assert text != FULL
    with pytest.raises(ValueError) as info:
        session_from_text(text, source="session.toml", base_dir=DATA)
    message = str(info.value)
    assert message.startswith("session.toml: ") and where in message, message


def test_load_session_names_the_file(tmp_path):
    path = tmp_path / "session.toml"
    path.write_text(FULL.replace("energy_kev = 17.0", "energy_kev = 0.0"))
    with pytest.raises(ValueError, match=r"session.toml: \[beam\] energy_kev: must be"):
        load_session(path)
    path.write_text("version = 1\n[phase\n")
    with pytest.raises(ValueError, match="session.toml: not a valid TOML"):
        load_session(path)
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_session(tmp_path / "missing.toml")


def test_relative_paths_resolve_against_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "beamtime"
    folder.mkdir()
    shutil.copy(AL_CIF, folder / "crystal.cif")
    shutil.copy(LENS, folder / "objective.toml")
    text = (FULL.replace('name = "Al"', 'cif = "crystal.cif"')
            .replace('file = "lens_id06.toml"', 'file = "objective.toml"'))
    (folder / "plan.toml").write_text(text)
    monkeypatch.chdir(tmp_path)  # somewhere else
    s = load_session(folder / "plan.toml")
    kw = s.plan_kwargs()
    assert kw["phase"] == str(folder.resolve() / "crystal.cif")
    assert kw["lens"] == str(folder.resolve() / "objective.toml")
    ds = xrdflow.plan(**kw)
    assert float(ds.two_theta.values[0, 0]) == pytest.approx(17.9468, abs=1e-3)
    # saved next to the files: stays relative; saved elsewhere: made absolute
    assert "crystal.cif" in save_session(s, folder / "copy.toml").read_text()
    moved = load_session(save_session(s, tmp_path / "moved.toml"))
    assert Path(moved.phase).is_absolute() and moved.plan_kwargs()["phase"] == kw["phase"]
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_plan_kwargs_gives_the_same_plan_as_plan():
    s = session_from_text(FULL, base_dir=DATA)
    ours = xrdflow.plan(**s.plan_kwargs()).compute()
    direct = xrdflow.plan("Al", energy_kev=17.0, reflection="1 1 1",
                          mount={"vertical": "(111)", "beam": "[1-10]"}, stage="shortest-path",
                          goniometer="dfxrm", scattering_plane="vertical", surface_normal="[1-10]",
                          thickness_mm=0.3, density=2.7, two_theta_range=(0.0, 40.0), lens=LENS,
                          lens_distance_mm=5000.0).compute()
    ours.attrs.pop("lens"), direct.attrs.pop("lens")  # the same file, spelt as str / Path
    xr.testing.assert_identical(ours, direct)


def test_sweep_and_scene_kwargs():
    s = session_from_text(FULL, base_dir=DATA)
    kw = s.sweep_kwargs()
    e = kw["energy_kev"]
    assert e.min() == 10.0 and e.max() == 60.0 and 17.0 in e and len(e) == 51
    assert 17.3 in s.replace(energy_kev=17.3).sweep_energies()  # the plan's energy is added
    sw = xrdflow.sweep(**kw)
    assert sw.sizes["energy"] == 51 and "transmission" in sw and "phi" in sw
    assert s.scene_kwargs() == dict(reflection="1 1 1", solution=1, sample_size_mm=(1.5, 2.0, 0.3),
                                    beam_size_mm=(0.4, 0.05), detector_distance_mm=300.0,
                                    compact=False, cells=(2, 1, 1), bonds=False, polyhedra=True)
    inputs = s.inputs()
    assert inputs["Phase"] == "Al" and inputs["Energy"].startswith("17 keV")
    assert inputs["Mount: up"] == "(111)" and "5000" in inputs["Lens condition"]


def test_embedded_cif_reproduces_the_file(tmp_path):
    text = AL_CIF.read_text()
    from_file = Session(phase=str(AL_CIF), reflection="2 0 0", mount_up=None)
    embedded = Session(phase="Al_biso", cif_text=text, reflection="2 0 0", mount_up=None)
    back = session_from_text(session_to_text(embedded))
    assert back == embedded and back.cif_text == text
    a = xrdflow.plan(**from_file.plan_kwargs()).compute()
    b = xrdflow.plan(**back.plan_kwargs()).compute()
    # the CIF's Debye-Waller factor (B = 0.8) is applied in both
    assert "0.8" in str(b.structure_factor_sq.attrs.get("debye_waller_b_a2", ""))
    np.testing.assert_allclose(a.structure_factor_sq.values, b.structure_factor_sq.values)
    np.testing.assert_allclose(a.two_theta.values, b.two_theta.values)
    # the embedded CIF is written to a private file named after the label
    path = Path(back.phase_source())
    assert path.name == "Al_biso.cif" and (path.parent.parent.stat().st_mode & 0o077) == 0


def test_session_checks_its_values():
    with pytest.raises(ValueError, match=r"\[beam\] energy_kev, wavelength_a: give exactly one"):
        Session(energy_kev=17.0, wavelength_a=0.7)
    with pytest.raises(ValueError, match=r"\[mount\] exit_surface: needs \[mount\] up"):
        Session(mount_up=None, exit_surface="[100]")
    with pytest.raises(ValueError, match=r"\[lens\] distance_mm, magnification: need a lens"):
        Session(lens_distance_mm=100.0)
    s = Session().replace(energy_kev=30.0)
    assert s.energy == 30.0 and s.plan_kwargs()["energy_kev"] == 30.0


def test_without_tomli_w_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tomli_w", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[app\]"'):
        session_to_text(Session())


# ------------------------------------------------------------- the review's fixes
def _p1_cif(a: float, atoms: str = "Al1 Al 0 0 0 1.0") -> str:
    return (f"data_p1\n_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n"
            "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
            "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n"
            "_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
            f"_atom_site_fract_z\n_atom_site_occupancy\n{atoms}\n")


@pytest.mark.parametrize("session", [
    Session(phase="Al", mount_up="(111)", exit_surface="[1-10]", two_theta_range=(0.0, 40.0)),
    Session(phase="Si", energy_kev=30.0, mount_up="(001)"),
    Session(phase="Mg", mount_up=None),
])
def test_resolved_fills_in_the_apps_default_reflection(session):
    from xrdflow.app import logic
    from xrdflow.session import resolve_reflection

    assert session.reflection is None
    resolved = session.resolved()
    assert resolved.reflection == logic.reflection_choices(session)[0].value
    assert resolved == session.replace(reflection=resolved.reflection)
    assert resolve_reflection(session) == resolved
    assert resolved.resolved() is resolved  # a reflection given: kept
    # the report's inputs name the reflection planned, not "strongest reachable"
    assert session.inputs()["Reflection"].startswith(resolved.reflection + " ")
    assert logic.compute(session).reflection == resolved.reflection


def test_resolved_without_streamlit_or_plotly_and_without_a_reflection():
    code = ("import sys; from xrdflow.session import Session; "
            "print(Session(mount_up=None).resolved().reflection); "
            "print(sorted(m for m in ('streamlit', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=300).stdout.split("\n")
    assert out[:2] == ["111", "[]"]
    with pytest.raises(ValueError, match=r"^reflection: no reflection of Al diffracts"):
        Session(energy_kev=0.5, mount_up=None).resolved()  # wavelength > 2d


@pytest.mark.parametrize("change, message", [
    (('up = "(111)"', 'up = "xyz"'), r"^s\.toml: \[mount\] up: cannot read a direction"),
    (('exit_surface = "[1-10]"', 'exit_surface = "[1 2"'),
     r"^s\.toml: \[mount\] exit_surface: cannot read a direction"),
    (('reflection = "1 1 1"', 'reflection = "abc"'),
     r"^s\.toml: \[mount\] reflection: cannot read Miller indices from 'abc'"),
    (('reflection = "1 1 1"', 'reflection = "[111]"'),
     r"^s\.toml: \[mount\] reflection: '\[111\]' is a direction"),
    (('file = "lens_id06.toml"', "table = {a = 1}"), r"^s\.toml: \[lens\] table: unknown key 'a'"),
])
def test_bad_indices_directions_and_lens_table_name_file_and_key(change, message):
    text = FULL.replace(*change)
    assert text != FULL
    with pytest.raises(ValueError, match=message):
        session_from_text(text, source="s.toml", base_dir=DATA)


def test_good_indices_are_kept_as_written():
    s = session_from_text(FULL.replace('reflection = "1 1 1"', 'reflection = "Al 2 0 0"')
                          .replace('up = "(111)"', 'up = "[0.5 1 0]"'), base_dir=DATA)
    assert (s.reflection, s.mount_up) == ("Al 2 0 0", "[0.5 1 0]")


@pytest.mark.parametrize("change, where", [
    (("energy_kev = 17.0", "energy_kev = 1000.0"), r"\[beam\] energy_kev: must be between 0.1 and 800"),
    (("energy_kev = 17.0", "energy_kev = 0.05"), r"\[beam\] energy_kev: must be between"),
    (("energy_kev = 17.0", "wavelength_a = 200.0"), r"\[beam\] wavelength_a: must be between"),
    (("cells = [2, 1, 1]", "cells = [50, 1, 1]"), r"\[display\] cells: must be between 1 and 4"),
    (("points = 51", "points = 5000"), r"\[sweep\] points: must be between 2 and 2000"),
    (("energy_kev = [10.0, 60.0]", "energy_kev = [10.0, 2000.0]"), r"\[sweep\] energy_kev: must be"),
    (("size_mm = [1.5, 2.0, 0.3]", "size_mm = [0.0001, 2.0, 0.3]"),
     r"\[sample\] size_mm: must be between 0.001 and 1000 mm"),
    (("beam_size_mm = [0.4, 0.05]", "beam_size_mm = [0.4, 5000.0]"), r"\[display\] beam_size_mm"),
    (("density = 2.7", "density = 100.0"), r"\[sample\] density: must be between"),
    (("distance_mm = 5000.0", "distance_mm = 0.0001"), r"\[lens\] distance_mm: must be between"),
])
def test_values_outside_the_app_ranges_are_refused(change, where):
    text = FULL.replace(*change)
    assert text != FULL
    with pytest.raises(ValueError, match="^s.toml: " + where):
        session_from_text(text, source="s.toml", base_dir=DATA)


def test_range_limits_are_accepted():
    from xrdflow import session as S

    lo, hi = S.ENERGY_RANGE_KEV
    for e in (lo, hi):
        assert Session(energy_kev=e).energy_kev == e
    for w in S.WAVELENGTH_RANGE_A:
        assert Session(energy_kev=None, wavelength_a=w).wavelength_a == w
    s = Session(cells=(4, 4, 4), sweep_points=2000, sample_size_mm=(0.001, 1000.0, 0.001))
    assert s.cells == (4, 4, 4) and s.sweep_points == 2000


@pytest.mark.parametrize("version", ["1.0", "true", '"1"'])
def test_version_must_be_the_integer_1(version):
    with pytest.raises(ValueError, match=r"^s\.toml: version: must be 1"):
        session_from_text(FULL.replace("version = 1", f"version = {version}"), source="s.toml",
                          base_dir=DATA)


def test_crlf_cif_text_round_trips_exactly():
    text = AL_CIF.read_text()
    for crlf in (text.replace("\n", "\r\n"), text.replace("\n", "\r")):
        s = Session(phase="Al_biso", cif_text=crlf, reflection="2 0 0", mount_up=None)
        assert s.cif_text == text and "\r" not in s.cif_text
        back = session_from_text(session_to_text(s))
        assert back == s and back.cif_text == s.cif_text
        assert session_to_text(back) == session_to_text(s)


def test_save_without_base_dir_keeps_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "other").mkdir()
    shutil.copy(AL_CIF, tmp_path / "sub" / "Al.cif")
    s = Session(phase="sub/Al.cif", mount_up=None)
    assert s.base_dir is None
    back = load_session(save_session(s, "other/s.toml"))
    assert Path(back.phase_source()) == (tmp_path / "sub" / "Al.cif").resolve()
    # saved in the working folder itself: stays relative
    assert load_session(save_session(s, "s.toml")).phase == "sub/Al.cif"


def test_embedded_cif_is_written_atomically(monkeypatch):
    from xrdflow import session as S

    renamed = []
    real = S.os.replace
    monkeypatch.setattr(S.os, "replace", lambda a, b: renamed.append(Path(b)) or real(a, b))
    text = AL_CIF.read_text() + "\n# atomic write test\n"
    path = Path(Session(phase="Al_biso", cif_text=text, mount_up=None).phase_source())
    assert renamed == [path] and path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["Al_biso.cif"]  # no temporary file left


def test_sweep_kwargs_include_the_lens():
    s = session_from_text(FULL, base_dir=DATA)
    kw = s.sweep_kwargs()
    assert kw["lens"] == str(LENS) and kw["lens_distance_mm"] == 5000.0
    assert kw["lens_magnification"] is None
    assert "lens" not in Session().sweep_kwargs()


def test_a_huge_cell_is_refused_before_enumerating(monkeypatch):
    from xrdflow import session as S

    big = Session(phase="p1", cif_text=_p1_cif(60.0), mount_up=None)
    with pytest.raises(ValueError, match=r"cell volume 2\.16e\+05 Å³\) at 17 keV"):
        big.resolved()
    # a narrow 2theta range keeps few reflections: allowed (the estimate uses its maximum)
    assert big.replace(energy_kev=5.0, two_theta_range=(0.0, 5.0)).resolved().reflection
    # running out of memory anyway: a message, not a MemoryError

    def oom(key):
        raise MemoryError

    monkeypatch.setattr(S, "_enumerate_candidates", oom)
    with pytest.raises(ValueError, match="not enough memory"):
        Session(phase="Si", energy_kev=33.3, mount_up=None).resolved()


def test_choice_key_uses_the_session_defaults():
    from xrdflow.session import _choice_key

    s = Session(cells=(2, 2, 2), sweep_points=10, bonds=False, solution=1, reflection="2 0 0",
                lens=str(LENS), lens_distance_mm=3000.0)
    assert _choice_key(s) == Session() and _choice_key(Session()) == Session()
