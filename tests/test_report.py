"""The one-page report PDF: content checked as text (pdftotext) and as a picture (pdftoppm)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import xrdflow
from xrdflow.cli import main

LENS = Path(__file__).parent / "data" / "lens_id06.toml"
SI = dict(energy_kev=17.0, reflection="1 1 1", mount={"vertical": "(111)"},
          goniometer="dfxrm", thickness_mm=0.1, lens=LENS, lens_distance_mm=5000.0)
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None
                                   or shutil.which("pdftoppm") is None,
                                   reason="poppler-utils (pdftotext, pdftoppm) is not installed")


@pytest.fixture(scope="module")
def si_plan():
    return xrdflow.plan("Si", **SI).compute()


@pytest.fixture(scope="module")
def si_report(si_plan, tmp_path_factory):
    from xrdflow.scene import scene_from_plan

    scene = scene_from_plan(si_plan, "Si", sample_size_mm=(2.0, 2.0, 0.1))
    path = tmp_path_factory.mktemp("report") / "plan.pdf"
    xrdflow.write_report(path, si_plan, phase="Si", scene=scene,
                         inputs={"operator": "test"})
    return path


def _text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def _page(path: Path, tmp: Path, dpi: int = 60) -> np.ndarray:
    from PIL import Image

    out = tmp / "page"
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", str(path), str(out)],
                   check=True)
    return np.asarray(Image.open(next(tmp.glob("page*.png"))).convert("RGB"), float)


def test_report_is_one_valid_a4_page(si_report):
    data = si_report.read_bytes()
    assert data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) == 1
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]", data)
    w, h = float(box.group(1)), float(box.group(2))
    assert w == pytest.approx(595.3, abs=1.0) and h == pytest.approx(841.9, abs=1.0)  # A4 in pt


@needs_poppler
def test_report_holds_the_plan_numbers(si_report, si_plan):
    text = _text(si_report)
    row = si_plan.isel(energy=0, reflection=0)
    assert "Si 111" in text
    assert f"{float(row.two_theta):.3f}" in text  # 2theta, as the table prints it
    assert f"{float(row.d_spacing):.5f}" in text
    assert f"{np.sqrt(float(row.structure_factor_sq)):.4g}" in text  # |F|
    for name in si_plan.attrs["stage_angles"]:
        for s in (0, 1):
            assert f"{round(float(row[name][s]), 3) + 0.0:.3f}" in text
    assert f"{float(row.attenuation_length):.4g}" in text
    assert f"{float(row.transmission):.4g}" in text
    assert f"{float(row.magnification):.3f}" in text and f"{float(row.d1_mm):.2f}" in text
    assert f"xrdflow {xrdflow.__version__}" in text
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "operator: test" in text
    assert "Transmission against energy" in text


@needs_poppler
def test_report_page_shows_the_3d_view_and_the_curve(si_report, tmp_path):
    img = _page(si_report, tmp_path)
    h, w, _ = img.shape
    assert h / w == pytest.approx(841.9 / 595.3, rel=0.02)
    sat = img.max(axis=2) - img.min(axis=2)
    view = sat[int(0.06 * h):int(0.44 * h), int(0.47 * w):]
    assert (view > 60).mean() > 0.01  # coloured atoms, beams and sample
    curve = sat[int(0.78 * h):int(0.94 * h), int(0.1 * w):int(0.95 * w)]
    assert (curve > 60).mean() > 0.002  # the blue curve and the red marker
    assert _overlapping_words(si_report) == []


def test_report_without_a_mount_says_so(tmp_path):
    ds = xrdflow.plan("Al", energy_kev=30.0, reflection="111", thickness_mm=0.5)
    path = xrdflow.write_report(tmp_path / "al.pdf", ds, phase="Al")
    assert path.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = _text(path)
        assert "no 3D view" in text and "Al 111" in text


def test_report_refuses_bad_paths_and_leaves_nothing_behind(si_plan, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="path: .*pdf"):
        xrdflow.write_report(tmp_path / "plan.png", si_plan, phase="Si")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xrdflow.write_report(tmp_path / "no" / "plan.pdf", si_plan, phase="Si")
    with pytest.raises(ValueError, match="one energy"):
        xrdflow.write_report(tmp_path / "x.pdf", xrdflow.sweep("Si", energy_kev=[17.0, 18.0]),
                             phase="Si")
    # the disk fills up half-way through the write: no file under the final name, no debris
    real = Path.write_bytes

    def half_then_fail(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        xrdflow.write_report(tmp_path / "plan.pdf", si_plan, phase="Si")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def _words(path: Path) -> list[tuple[float, float, float, float, str]]:
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], check=True,
                         capture_output=True, text=True).stdout
    return [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
        out)]


def _overlapping_words(path: Path) -> list[tuple[str, str]]:
    """Pairs of words printed over each other (boxes shrunk to their cores: the font's
    ascent and descent of neighbouring lines may touch, the letters may not)."""
    words = _words(path)
    b = np.array([w[:4] for w in words])
    cy, h = (b[:, 1] + b[:, 3]) / 2, b[:, 3] - b[:, 1]
    x0, x1 = b[:, 0] + 0.1 * (b[:, 2] - b[:, 0]), b[:, 2] - 0.1 * (b[:, 2] - b[:, 0])
    y0, y1 = cy - 0.2 * h, cy + 0.2 * h
    hit = ((x0[:, None] < x1[None]) & (x0[None] < x1[:, None])
           & (y0[:, None] < y1[None]) & (y0[None] < y1[:, None]))
    i, j = np.nonzero(np.triu(hit, k=1))
    return [(words[a][4], words[c][4]) for a, c in zip(i, j)]


@needs_poppler
def test_a_full_page_pushes_blocks_down_instead_of_overprinting(tmp_path):
    """Many reflections, two thicknesses, a long phase name, a long lens description and
    a long list of inputs: nothing is printed over anything else, the table is cut with a
    note, and the page reports the thickness the 3D view draws."""
    from xrdflow.scene import scene_from_plan

    ds = xrdflow.plan("Si", energy_kev=30.0, thickness_mm=[0.1, 0.5]).compute()  # every family
    assert ds.sizes["reflection"] > 20
    ds.attrs["phase"] = "Si wafer, float-zone, boron-doped, batch 2024-117-ABCDEFG from the supplier"
    inputs = {f"input {i}": "a rather long value " * (1 + i % 3) for i in range(30)}
    path = xrdflow.write_report(tmp_path / "full.pdf", ds, phase="Si", inputs=inputs)
    assert _overlapping_words(path) == []
    text = _text(path)
    assert "rows: the full table is in the plan dataset" in text
    assert "more inputs not shown" in text
    assert "this page reports 0.1 mm" in text

    one = xrdflow.plan("Si", energy_kev=17.0, reflection="111", mount={"vertical": "(111)"},
                       goniometer="dfxrm", thickness_mm=[0.1, 0.5], lens=LENS,
                       lens_distance_mm=5000.0).compute()
    one.attrs["lens"] = "ID06 objective with a long description of its stack and spacers " * 3
    scene = scene_from_plan(one, "Si", sample_size_mm=(1.0, 1.0, 0.5))
    path = xrdflow.write_report(tmp_path / "thick.pdf", one, phase="Si", scene=scene)
    assert _overlapping_words(path) == []
    text = _text(path)
    t05 = one.isel(energy=0).sel(thickness=0.5)
    assert f"transmission {float(t05.transmission):.4g}" in text  # the drawn plate's
    assert f"{float(t05.path_length[0, 0]):.4g}" in text
    assert "Transmission against energy through 0.5 mm" in text


def test_cli_plan_report(tmp_path, capsys):
    out = tmp_path / "report.pdf"
    assert main(["plan", "Si", "--energy", "17", "--reflection", "111", "--vertical", "(111)",
                 "--goniometer", "dfxrm", "--sample-size-mm", "2", "2", "0.1", "--lens", str(LENS),
                 "--lens-distance-mm", "5000", "--report", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"%PDF")
