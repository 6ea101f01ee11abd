"""One planned experiment: xrdflow.plan, plan_table and the `xrdflow plan` / `sweep` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrdflow import plan, plan_table, sweep
from xrdflow.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xrdflow.cli", *args], capture_output=True,
                          text=True)


def _rows(text: str, label: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.startswith(label + " ")]


def test_plan_prints_the_member_asked_for_not_its_family(capsys):
    # Mg (0,1,-1,1) and (1,0,-1,1) are one family; with [0001] up and [2-1-10] along the
    # beam they need different angles. The printed angles are the asked member's.
    mount = {"vertical": "[0001]", "beam": "[2-1-10]"}
    for member in ("01-11", "10-11"):
        assert main(["plan", "Mg", "--energy", "30", "--reflection", member, "--vertical",
                     "[0001]", "--beam", "[2-1-10]", "--goniometer", "dfxrm"]) == 0
        out = capsys.readouterr().out
        rows = _rows(out, f"Mg {member}")
        assert len(rows) == 3  # the reflection line and two orientation solutions
        ref = sweep("Mg", energy_kev=30.0, reflections=[member], mount=mount,
                    stage="shortest-path", goniometer="dfxrm").compute()
        for s, row in enumerate(rows[1:]):
            assert row[2] == str(s)
            got = [float(v) for v in row[3:6]]
            want = [float(ref[n][0, 0, s]) for n in ("phi", "chi", "omega")]
            np.testing.assert_allclose(got, want, atol=6e-5)
    a = sweep("Mg", energy_kev=30.0, reflections=["01-11"], mount=mount, stage="shortest-path")
    b = sweep("Mg", energy_kev=30.0, reflections=["10-11"], mount=mount, stage="shortest-path")
    assert not np.allclose(a.rotation.values, b.rotation.values)


def test_plan_table_has_the_crystal_and_absorption():
    ds = plan("Fe-bcc", energy_kev=40.0, reflection="110", mount={"vertical": "(110)"},
              thickness_mm=0.05)
    text = plan_table(ds)
    assert "Fe-bcc: Fe, space group Im-3m, density 7.8" in text
    assert "volume 23.5" in text  # a = 2.8665 A
    mu = 1.0 / float(ds.attenuation_length[0])
    assert f"transmission {np.exp(-mu * 0.05):.4g}" in text
    # symmetric Laue: up = Q, the plate normal (beam) perpendicular to it
    theta = float(ds.bragg_angle[0, 0])
    np.testing.assert_allclose(ds.entry_angle.values, theta, atol=1e-9)


@pytest.mark.parametrize("args, match", [
    (["--energy", "17", "--reflection", "1x1"], "reflections: cannot read"),
    (["--energy", "17", "--reflection", "100"], "forbidden"),
    (["--energy", "1", "--reflection", "111"], "cannot diffract Al 111"),
    (["--energy", "17", "--vertical", "(111)", "--beam", "[222]"], "beam: .* parallel"),
    (["--energy", "17", "--vertical", "[1x1]"], "vertical: cannot read"),
    (["--energy", "17", "--beam", "[100]"], "--beam: needs --vertical"),
    (["--energy", "17", "--reflection", "111", "--figure-3d", "x.png"], "need a mount"),
    (["--energy", "17", "--vertical", "(111)", "--stage", "omega", "--goniometer", "dfxrm"],
     "only with --stage shortest-path"),
    (["--energy", "17", "--vertical", "(111)", "--goniometer", "kappa"], "unknown preset"),
    (["--energy", "17", "--magnification", "10"], "need --lens"),
])
def test_plan_errors_are_one_line_naming_the_argument(args, match):
    proc = run_cli("plan", "Al", *args)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("xrdflow plan: error: ")
    import re
    assert re.search(match, proc.stderr), proc.stderr


def test_sweep_takes_one_energy_and_the_stage(capsys):
    assert main(["sweep", "Al", "--energy", "17", "--mount", "(111)", "--stage",
                 "shortest-path", "--reflection", "111", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Al at 17 keV")
    assert "omega1" in out and "path/t 1" in out
    assert main(["sweep", "Al", "--energy", "17", "17", "1"]) == 0
    proc = run_cli("sweep", "Al", "--energy", "17", "10", "5")
    assert proc.returncode == 1 and "need 0 < LOW < HIGH" in proc.stderr


def test_custom_goniometer_file(tmp_path, capsys):
    spec = tmp_path / "stage.toml"
    spec.write_text('name = "hexapod"\n[[axes]]\nname = "mu"\ndirection = "y"\nsense = -1\n'
                    '[[axes]]\nname = "roll"\ndirection = [1, 0, 0]\n'
                    '[[axes]]\nname = "spin"\ndirection = "z"\n')
    assert main(["plan", "Al", "--energy", "17", "--reflection", "111", "--vertical", "(111)",
                 "--goniometer", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "mu (deg)" in out and "hexapod" in out
    rows = _rows(out, "Al 111")
    theta = float(rows[0][5])
    # left-handed about y: the rocking reads +theta where the right-handed dfxrm reads -theta
    assert float(rows[1][3]) == pytest.approx(theta, abs=1e-4)


def test_scene_outputs_as_a_person_sees_them(tmp_path, capsys):
    png, pdf, gltf = tmp_path / "scene.png", tmp_path / "scene.pdf", tmp_path / "scene.gltf"
    base = ["plan", "Al", "--energy", "17", "--reflection", "111", "--vertical", "(111)",
            "--goniometer", "dfxrm", "--thickness-mm", "0.3"]
    assert main(base + ["--figure-3d", str(png), "--gltf", str(gltf)]) == 0
    assert main(base + ["--figure-3d", str(pdf), "--solution", "1"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and f"wrote {gltf}" in out
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert img.std() > 5  # not a blank canvas
    scene = json.loads(gltf.read_text())
    names = {n.get("name") for n in scene["nodes"]}
    assert {"sample", "beam_in", "beam_diffracted", "beam_in_sample", "detector",
            "atoms_Al", "unit_cell"} <= names
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")],
                       check=True)
        page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"), float)
        assert page.std() > 5
    assert not list(tmp_path.glob("*.partial"))


LENS = __import__("pathlib").Path(__file__).parent / "data" / "lens_id06.toml"


def test_sweep_with_a_lens_carries_the_lens_optics():
    from xrdflow import crl_optics

    energy = [15.0, 17.0, 20.0]
    ds = sweep("Al", energy_kev=energy, reflections=["111"], mount={"vertical": "(111)"},
               stage="shortest-path", lens=LENS, lens_distance_mm=5000.0)
    ref = crl_optics(LENS, energy_kev=energy, total_distance_mm=5000.0)
    for var in ("focal_length_mm", "d1_mm", "d2_mm", "magnification"):
        np.testing.assert_allclose(ds[var].values, ref[var].values, rtol=1e-12, err_msg=var)
    assert ds.d1_mm.attrs["units"] == "mm"
    assert "88 lenslets" in ds.attrs["lens"]
    with pytest.raises(ValueError, match="need lens"):
        sweep("Al", energy_kev=17.0, lens_magnification=10.0)


def test_plan_with_a_lens_prints_and_writes_it(tmp_path, capsys):
    import h5py

    out = tmp_path / "plan.nxs"
    assert main(["plan", "Al", "--energy", "17", "--reflection", "111", "--vertical", "(111)",
                 "--lens", str(LENS), "--magnification", "18", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "magnification 18.000" in text and "focal length 267.5" in text
    with h5py.File(out, "r") as f:
        names = []
        f.visit(names.append)
    assert any(n.endswith("rotation") for n in names)
    assert any(n.endswith("d1_mm") for n in names)
    proc = run_cli("plan", "Al", "--energy", "17", "--lens", str(LENS))
    assert proc.returncode == 1 and "--lens-distance-mm or --magnification" in proc.stderr


SESSION = """version = 1
[phase]
name = "Si"
[beam]
energy_kev = 17.0
[sample]
size_mm = [2.0, 2.0, 0.1]
[mount]
up = "(111)"
reflection = "1 1 1"
[goniometer]
preset = "dfxrm"
[lens]
file = "lens.toml"
distance_mm = 5000.0
[sweep]
energy_kev = [10.0, 30.0]
points = 5
"""


def test_a_session_file_drives_plan_and_sweep_as_the_flags_do(tmp_path, capsys, monkeypatch):
    """The file the app saves reproduces the plan from the command line: the same table as
    the same inputs given as flags, and the scene outputs and the report from it."""
    lens = Path(__file__).parent / "data" / "lens_id06.toml"
    (tmp_path / "lens.toml").write_text(lens.read_text(encoding="utf-8"), encoding="utf-8")
    session = tmp_path / "session.toml"
    session.write_text(SESSION, encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)  # the lens path is relative to the session file
    assert main(["plan", "--session", str(session)]) == 0
    from_session = capsys.readouterr().out
    assert main(["plan", "Si", "--energy", "17", "--reflection", "1 1 1", "--vertical", "(111)",
                 "--goniometer", "dfxrm", "--sample-size-mm", "2", "2", "0.1", "--lens",
                 str(lens), "--lens-distance-mm", "5000"]) == 0
    assert capsys.readouterr().out == from_session
    assert "magnification 16.658" in from_session and "Si 111" in from_session
    report, glb = tmp_path / "r.pdf", tmp_path / "s.glb"
    assert main(["plan", "--session", str(session), "--report", str(report),
                 "--gltf", str(glb)]) == 0
    assert report.read_bytes().startswith(b"%PDF") and glb.read_bytes()[:4] == b"glTF"
    assert main(["sweep", "--session", str(session)]) == 0
    out = capsys.readouterr().out
    assert "Si at 17 keV" in out and "thickness 0.1 mm: transmission" in out


@pytest.mark.parametrize("args, match", [
    (["plan", "--session", "{s}", "--energy", "20"], "--session: gives every input; do not add --energy"),
    (["plan", "--session", "{s}", "--polyhedra"], "do not add --polyhedra"),
    (["sweep", "--session", "{s}", "--thickness-mm", "1"], "do not add --thickness-mm"),
    (["plan", "--session", "{bad}"], r"bad.toml: \[beam\] energy_kev"),
    (["plan", "--energy", "17"], "phase: give a phase"),
    (["sweep", "Al"], "--energy: give one energy"),
])
def test_session_errors_are_one_line(tmp_path, args, match):
    good = tmp_path / "s.toml"
    good.write_text(SESSION.replace('file = "lens.toml"\ndistance_mm = 5000.0\n', ""))
    bad = tmp_path / "bad.toml"
    bad.write_text(SESSION.replace("energy_kev = 17.0", "energy_kev = -17.0"))
    proc = run_cli(*[a.format(s=good, bad=bad) for a in args])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    import re
    assert re.search(match, proc.stderr), proc.stderr


def test_scene_outputs_are_checked_before_anything_is_written(tmp_path):
    out = tmp_path / "plan.nc"
    proc = run_cli("plan", "Al", "--energy", "17", "--reflection", "111", "-o", str(out),
                   "--report", str(tmp_path / "r.pdf"), "--figure-3d", str(tmp_path / "f.png"))
    assert proc.returncode == 1 and "--figure-3d: need a mount" in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and list(tmp_path.iterdir()) == []
    proc = run_cli("plan", "Al", "--energy", "17", "--vertical", "(111)", "--reflection", "111",
                   "200", "--gltf", str(tmp_path / "s.glb"))
    assert proc.returncode == 1 and "name one --reflection" in proc.stderr, proc.stderr
    proc = run_cli("plan", "Al", "--energy", "17", "--reflection", "111", "--polyhedra")
    assert proc.returncode == 1 and "--polyhedra: options of the 3D scene" in proc.stderr


def test_model_and_scene_flags_reach_the_plan_and_the_scene(tmp_path, capsys):
    pytest.importorskip("trimesh")
    import trimesh

    base = ["plan", "CeO2", "--energy", "30", "--reflection", "111", "--vertical", "(111)",
            "--goniometer", "dfxrm", "--sample-size-mm", "1", "1", "0.05"]
    glb = tmp_path / "a.glb"
    assert main(base + ["--polyhedra", "--no-bonds", "--cells", "2", "1", "1",
                        "--true-distances", "--detector-distance-mm", "300", "--gltf",
                        str(glb)]) == 0
    names = set(trimesh.load(glb).graph.nodes_geometry)
    assert "polyhedra_Ce" in names and not any(n.startswith("bonds_") for n in names)
    assert "transmission" in capsys.readouterr().out  # --sample-size-mm gave the thickness
    assert main(["plan", "CeO2", "--energy", "30", "--reflection", "111", "--no-anomalous"]) == 0
    printed = capsys.readouterr().out
    f2 = float(plan("CeO2", energy_kev=30.0, reflection="111", anomalous=False)
               .structure_factor_sq.values.ravel()[0])
    f2_anomalous = float(plan("CeO2", energy_kev=30.0, reflection="111")
                         .structure_factor_sq.values.ravel()[0])
    assert f"{f2:.4g}" in printed and f"{f2_anomalous:.4g}" not in printed


def test_sweep_session_with_a_wavelength_reports_at_its_energy(tmp_path, capsys):
    session = tmp_path / "wl.toml"
    session.write_text(SESSION.replace("energy_kev = 17.0", "wavelength_a = 0.7293")
                       .replace('file = "lens.toml"\ndistance_mm = 5000.0\n', ""))
    assert main(["sweep", "--session", str(session)]) == 0
    assert capsys.readouterr().out.startswith("Si at 17.0004 keV")  # 12.398 / 0.7293 A
