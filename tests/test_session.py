"""Planning sessions (xrdflow.session): the TOML layout, its checks, and the library calls."""

from __future__ import annotations

import shutil
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
