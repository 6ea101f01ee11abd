"""The planner app: its logic (xrdflow.app.logic), the page (streamlit AppTest) and
``xrdflow app`` (xrdflow.cli_app)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xrdflow import cli_app
from xrdflow.session import Session

DATA = Path(__file__).parent / "data"
AL_CIF = DATA / "cif" / "Al_biso.cif"
LENS = DATA / "lens_id06.toml"
APP = Path(cli_app.__file__).parent / "app" / "streamlit_app.py"

pytest.importorskip("tomli_w", reason="the app writes session files with tomli-w (app extra)")


@pytest.fixture(scope="module")
def logic():
    from xrdflow.app import logic

    return logic


SESSION = Session(phase="Al", energy_kev=17.0, mount_up="(111)", exit_surface="[1-10]",
                  two_theta_range=(0.0, 40.0), sample_size_mm=(1.0, 1.0, 0.2))


# ------------------------------------------------------------------------------ logic
def test_cif_upload_is_read_or_refused_in_one_line(logic):
    up = logic.parse_cif_upload(AL_CIF.read_bytes(), "Al_biso.cif")
    assert up.label == "Al_biso" and up.formula == "Al" and "B_iso" in up.text
    with pytest.raises(ValueError, match=r'^CIF "bad.cif" could not be read: ') as info:
        logic.parse_cif_upload(b"this is not a crystal\n", "bad.cif")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r'CIF "empty.cif" could not be read: the file is empty'):
        logic.parse_cif_upload(b"  \n", "empty.cif")
    with pytest.raises(ValueError, match=r'CIF "big.cif" is too large .*limit is 2 MB'):
        logic.parse_cif_upload(b"#" * (logic.CIF_SIZE_LIMIT + 1), "big.cif")


def test_lens_upload(logic):
    table = logic.parse_lens_upload(LENS.read_bytes(), "lens.toml")
    assert "lens_series_0" in table
    with pytest.raises(ValueError, match=r'lens file "l.toml" could not be read: not valid TOML'):
        logic.parse_lens_upload(b"[x", "l.toml")
    with pytest.raises(ValueError, match=r'lens file "l.toml": .*number_of_lenses'):
        logic.parse_lens_upload(b'[lens_series_0]\nradius_of_curvature_in_um = 50.0\n'
                                b'[lens_series_0.material]\nformula = "Be"\ndensity_g_cm3 = 1.8\n',
                                "l.toml")


def test_reflection_choices_strongest_first_with_solutions(logic):
    choices = logic.reflection_choices(SESSION)
    assert [c.family for c in choices][:3] == ["Al 111", "Al 200", "Al 311"]
    assert all(a.intensity >= b.intensity for a, b in zip(choices, choices[1:]))
    assert all(0 <= c.two_theta <= 40 and c.has_solution for c in choices)
    assert choices[0].value == "111"  # (111) up, the 111 member: the shortest path
    # without a mount: the family representatives
    plain = logic.reflection_choices(SESSION.replace(mount_up=None, exit_surface=None))
    assert [c.value for c in plain][:3] == ["111", "200", "311"]


def test_compute_headline_table_and_messages(logic):
    r = logic.compute(SESSION)
    h = r.headline
    assert r.reflection == "111" and h["family"] == "Al 111"
    assert h["two_theta_deg"] == pytest.approx(17.9468, abs=1e-3)
    assert h["transmission"] == pytest.approx(0.7426, abs=1e-3)
    assert set(h["stage_angles"]) == {0, 1} and set(h["stage_angles"][0]) == {"phi", "chi", "omega"}
    assert r.warnings() == []
    cols = list(r.table.columns)
    for col in ("Reflection", "d (Å)", "2θ (°)", "|F|²", "Multiplicity", "Intensity", "Reachable",
                "phi sol 0 (°)", "phi sol 1 (°)", "Path sol 0 (mm)", "Transmission sol 1"):
        assert col in cols
    assert r.plan.sizes["energy"] == 1 and r.sweep.sizes["energy"] > 10
    thick = logic.compute(SESSION.replace(sample_size_mm=(1.0, 1.0, 20.0)))
    assert any(w.startswith("Sample too thick") for w in thick.warnings())
    far = logic.compute(SESSION.replace(reflection="4 4 4"))
    assert any("unreachable" in w and "outside the 2θ range" in w for w in far.warnings())
    with pytest.raises(ValueError, match="reflection"):
        logic.compute(SESSION.replace(reflection="1 0 0"))  # forbidden in Fm-3m
    # 111 along the omega axis: one circle cannot reach it
    stuck = logic.compute(SESSION.replace(stage="omega", reflection="1 1 1"))
    assert stuck.headline["stage_angles"] == {} and stuck.scene is None
    assert any(w.startswith("No stage solution: the omega stage") for w in stuck.warnings())


def test_session_with_embedded_lens_round_trips(logic):
    from xrdflow.session import session_from_text, session_to_text

    s = SESSION.replace(lens_table=logic.parse_lens_upload(LENS.read_bytes(), "lens.toml"),
                        lens_magnification=10.0)
    back = session_from_text(session_to_text(s))
    assert back == s and "radius_of_curvature_in_µm" in back.lens_table["lens_series_0"]
    r = logic.compute(back)
    assert r.headline["lens"]["magnification"] == pytest.approx(10.0)


def test_figures(logic):
    pytest.importorskip("plotly", reason="the app's figures need plotly (app extra)")
    r = logic.compute(SESSION)
    fig = logic.attenuation_figure(r)
    assert fig.layout.yaxis.type == "log" and fig.data[1].x[0] == 17.0
    fig = logic.transmission_figure(r)
    assert fig.data[1].x[0] == 0.2 and fig.data[1].y[0] == pytest.approx(0.7426, abs=1e-3)


def test_downloads(logic):
    r = logic.compute(SESSION)
    csv = logic.csv(r).decode()
    assert csv.splitlines()[0].startswith("Reflection,Family,d (Å),2θ (°)")
    nc = logic.netcdf(r)
    assert nc[:3] == b"CDF" or nc[:4] == b"\x89HDF"
    assert logic.session_toml(r.session).startswith(b"version = 1")
    pytest.importorskip("xrdflow.scene.build", reason="the 3D scene (xrdflow.scene) is needed")
    assert r.scene is not None
    pytest.importorskip("trimesh", reason="glTF export needs trimesh")
    assert logic.gltf(r)[:4] == b"glTF"
    pytest.importorskip("xrdflow.report", reason="the PDF report (xrdflow.report) is needed")
    assert logic.report_pdf(r)[:4] == b"%PDF"


# ------------------------------------------------------------------------------- page
@pytest.fixture(scope="module")
def page():
    pytest.importorskip("streamlit", reason="the page needs streamlit (pip install -e '.[app]')")
    from streamlit.testing.v1 import AppTest

    def start():
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        return at

    return start


def _headline(at) -> str:
    text = [m.value for m in at.markdown if "2θ =" in m.value]
    assert text, [m.value for m in at.markdown]
    return text[0]


def _two_theta(at) -> float:
    return float(re.search(r"2θ = ([0-9.]+)°", _headline(at)).group(1))


def test_page_runs_and_follows_the_inputs(page):
    at = page()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert _two_theta(at) == pytest.approx(17.947, abs=1e-3)
    assert "Transmission = 0.7426" in _headline(at)
    labels = {b.label for b in at.get("download_button")}
    assert {"Sweep (NetCDF)", "Table (CSV)", "Session (TOML)"} <= labels
    at.number_input(key="energy_kev").set_value(20.0).run()
    assert not at.exception
    assert _two_theta(at) == pytest.approx(15.237, abs=1e-3)
    at.selectbox(key="reflection").select_index(1).run()  # the second strongest: 200
    assert _two_theta(at) == pytest.approx(17.612, abs=1e-3)
    at.number_input(key="thickness_mm").set_value(40.0).run()
    assert any("Sample too thick" in w.value for w in at.warning)
    at.text_input(key="mount_up").set_value("(1 2").run()  # a typo: a message, no traceback
    assert not at.exception and at.error and "(1 2" in at.error[0].value


def test_page_bad_cif_upload_shows_a_message(page):
    at = page()
    at.selectbox(key="phase").set_value("Upload CIF…").run()
    assert not at.exception and "Upload a CIF file" in at.error[0].value
    at.file_uploader(key="cif_file").set_value(("bad.cif", b"not a cif", "text/plain")).run()
    assert not at.exception
    assert at.error[0].value.startswith('CIF "bad.cif" could not be read')
    at.file_uploader(key="cif_file").set_value(("Al_biso.cif", AL_CIF.read_bytes(),
                                                 "text/plain")).run()
    assert not at.exception and not at.error
    assert _two_theta(at) == pytest.approx(17.947, abs=1e-3)


def test_page_loads_a_session(page):
    at = page()
    text = (b'version = 1\n[phase]\nname = "Si"\n[beam]\nenergy_kev = 30.0\n'
            b'[mount]\nup = "(001)"\nreflection = "0 0 4"\n')
    at.file_uploader(key="session_file").set_value(("s.toml", text, "application/toml")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="phase").value == "Si"
    # 0 0 4 is not the member the list offers for (001) up (400 is): offered as given
    assert at.selectbox(key="reflection").value == "0 0 4  (as given)"
    assert "member 004" in _headline(at) and _two_theta(at) == pytest.approx(17.508, abs=1e-3)


def test_page_lens_upload_and_report(page):
    at = page()
    at.file_uploader(key="lens_file").set_value(("lens.toml", LENS.read_bytes(),
                                                  "application/toml")).run()
    assert not at.exception and not at.error
    assert any(m.value.startswith("**Objective lens**: focal length") for m in at.markdown)
    assert "lens_series_0" in at.session_state["lens_table"]
    pytest.importorskip("xrdflow.report", reason="the PDF report (xrdflow.report) is needed")
    assert {"Report (PDF)", "Scene (glTF)"} <= {b.label for b in at.get("download_button")}
    at.button(key="lens_remove").click().run()
    at.run()  # the file is still in the uploader: the lens stays removed
    assert not any(m.value.startswith("**Objective lens**") for m in at.markdown)


def test_page_bad_lens_upload_shows_a_message(page):
    at = page()
    at.file_uploader(key="lens_file").set_value(("bad.toml", b"[x", "application/toml")).run()
    assert not at.exception
    assert at.error[0].value.startswith('lens file "bad.toml" could not be read')


def test_page_warm_rerun(page, capsys):
    """A rerun that changes nothing: no error (its time is printed, not asserted: timings
    are not tested in this project)."""
    import time

    at = page()
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    assert not at.exception and not at.error
    with capsys.disabled():
        print(f"\nwarm rerun of the page: {elapsed:.3f} s")


# ------------------------------------------------------------- the review's fixes
def _p1_cif(a: float, atoms: str = "Al1 Al 0 0 0 1.0") -> bytes:
    return (f"data_p1\n_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n"
            "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
            "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n"
            "_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
            f"_atom_site_fract_z\n_atom_site_occupancy\n{atoms}\n").encode()


def test_cif_with_a_dummy_atom_is_refused(logic):
    for atoms in ("X1 X 0 0 0 1.0", "Al1 Al 0 0 0 1.0\nX1 X 0.5 0.5 0.5 1.0"):
        with pytest.raises(ValueError, match=r'^CIF "d.cif" could not be read: .*not a chemical '
                                             r'element'):
            logic.parse_cif_upload(_p1_cif(4.05, atoms), "d.cif")


def test_crlf_cif_upload_is_normalised(logic):
    up = logic.parse_cif_upload(AL_CIF.read_bytes().replace(b"\n", b"\r\n"), "Al_biso.cif")
    assert "\r" not in up.text and up.text == AL_CIF.read_text()
    from xrdflow.session import session_from_text, session_to_text

    s = up.session(SESSION)
    assert session_from_text(session_to_text(s)) == s


def test_session_upload_checks(logic):
    good = b'version = 1\n[phase]\nname = "Al"\n[beam]\nenergy_kev = 17.0\n'
    assert logic.parse_session_upload(good, "s.toml").phase == "Al"
    with pytest.raises(ValueError, match=r"^s\.toml: the session file is too large"):
        logic.parse_session_upload(b"\xff" * (logic.SESSION_SIZE_LIMIT + 1), "s.toml")
    with pytest.raises(ValueError, match=r"^s\.toml: not a text"):
        logic.parse_session_upload(b"\xff\xfe", "s.toml")
    cif = _p1_cif(4.05, "X1 X 0 0 0 1.0").decode()
    bad_cif = (b'version = 1\n[phase]\nname = "d"\ncif_text = """' + cif.encode() +
               b'"""\n[beam]\nenergy_kev = 17.0\n')
    with pytest.raises(ValueError, match=r'^s\.toml: \[phase\] cif_text: CIF "d\.cif" could not '
                                         r'be read: .*not a chemical element'):
        logic.parse_session_upload(bad_cif, "s.toml")
    bad_lens = good + b"[lens]\nmagnification = 2.0\ntable = {a = 1}\n"
    with pytest.raises(ValueError, match=r"^s\.toml: \[lens\] table: unknown key 'a'"):
        logic.parse_session_upload(bad_lens, "s.toml")


def test_huge_cell_is_refused_with_the_volume_and_energy(logic):
    up = logic.parse_cif_upload(_p1_cif(60.0), "big.cif")  # a few hundred bytes
    with pytest.raises(ValueError, match=r"cell volume 2\.16e\+05 Å³\) at 17 keV"):
        logic.compute(up.session(SESSION.replace(mount_up=None, exit_surface=None,
                                                 two_theta_range=None)))


def test_page_refuses_a_session_outside_the_widget_ranges(page):
    at = page()
    text = b'version = 1\n[phase]\nname = "Al"\n[beam]\nenergy_kev = 1000.0\n'
    at.file_uploader(key="session_file").set_value(("s.toml", text, "application/toml")).run()
    assert not at.exception
    assert any("[beam] energy_kev: must be between" in e.value.replace("\\", "")
               for e in at.error), [e.value for e in at.error]
    assert at.number_input(key="energy_kev").value == 17.0  # not silently 0.1 keV


def test_page_session_reloads_after_the_uploader_is_emptied(page):
    at = page()
    text = b'version = 1\n[phase]\nname = "Si"\n[beam]\nenergy_kev = 30.0\n'
    at.file_uploader(key="session_file").set_value(("s.toml", text, "application/toml")).run()
    assert at.number_input(key="energy_kev").value == 30.0
    at.number_input(key="energy_kev").set_value(25.0).run()
    at.file_uploader(key="session_file").set_value(None).run()
    at.file_uploader(key="session_file").set_value(("s.toml", text, "application/toml")).run()
    assert not at.exception and at.number_input(key="energy_kev").value == 30.0


def test_page_lens_upload_again_after_remove(page):
    at = page()
    lens = ("lens.toml", LENS.read_bytes(), "application/toml")
    at.file_uploader(key="lens_file").set_value(lens).run()
    at.button(key="lens_remove").click().run()
    assert not any(m.value.startswith("**Objective lens**") for m in at.markdown)
    at.file_uploader(key="lens_file").set_value(None).run()
    at.file_uploader(key="lens_file").set_value(lens).run()
    assert not at.exception
    assert any(m.value.startswith("**Objective lens**: focal length") for m in at.markdown)


def test_page_escapes_untrusted_text(page):
    at = page()
    at.selectbox(key="phase").set_value("Upload CIF…").run()
    at.file_uploader(key="cif_file").set_value(("*big*_[x].cif", AL_CIF.read_bytes(),
                                                 "text/plain")).run()
    assert not at.exception and not at.error
    at.number_input(key="energy_kev").set_value(0.5).run()  # nothing diffracts: the label shown
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(r"reflection: no reflection of \*big\*\_\[x\] diffracts" in e for e in errors), errors


def test_page_shows_no_traceback_for_an_unexpected_error(page, monkeypatch):
    from xrdflow.app import logic

    def broken(session):
        raise RuntimeError("boom")

    monkeypatch.setattr(logic, "compute", broken)
    at = page()
    at.number_input(key="energy_kev").set_value(23.4567).run()  # not in the page's cache
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Something went wrong (RuntimeError); the details are in the server log. Please "
        "report this."]


def test_stages_are_the_librarys():
    pytest.importorskip("streamlit", reason="the page needs streamlit")
    from xrdflow import options
    from xrdflow.app import streamlit_app

    assert streamlit_app.STAGES is options.STAGES


# -------------------------------------------------------------------------------- CLI
def _parser():
    from xrdflow.cli import _Parser

    parser = _Parser(prog="xrdflow")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    cli_app.add_app(sub)
    return parser


def test_app_help_shows_host_and_port(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["app", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "127.0.0.1" in out and "8501" in out
    args = _parser().parse_args(["app"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)


def test_xrdflow_cli_has_the_app_command(capsys):
    from xrdflow.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--help"])
    out = capsys.readouterr().out
    assert "default 127.0.0.1" in out and "default 8501" in out


def test_app_without_streamlit_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "streamlit", None)  # as if not installed
    args = _parser().parse_args(["app"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xrdflow app: needs the app extra") and "streamlit" in err, err
    assert err.endswith('pip install -e ".[app]" (or pip install "xrdflow[app]")'), err


class _FakeProcess:
    """A streamlit process that exits with ``result``, or (KeyboardInterrupt) is still
    running when Ctrl-C arrives and stops on SIGINT."""

    signals: list = []

    def __init__(self, cmd, result):
        self.cmd, self.result, self.returncode = cmd, result, None

    def wait(self, timeout=None):
        if isinstance(self.result, BaseException) and self.returncode is None:
            raise self.result
        return self.result if self.returncode is None else self.returncode

    def poll(self):
        return self.returncode

    def send_signal(self, sig):
        self.signals.append(sig)
        self.returncode = -sig

    def terminate(self):  # pragma: no cover - streamlit stops on SIGINT
        self.signals.append("terminate")
        self.returncode = -15

    kill = terminate


def test_app_runs_streamlit_and_passes_its_status(monkeypatch):
    pytest.importorskip("streamlit", reason="xrdflow app needs streamlit")
    seen = []
    for result, expected in ((3, 3), (KeyboardInterrupt(), 130)):
        monkeypatch.setattr(subprocess, "Popen",
                            lambda cmd, result=result: seen.append(cmd) or _FakeProcess(cmd, result))
        args = _parser().parse_args(["app", "--port", "8600"])
        assert cli_app.cmd_app(args) == expected
    import signal

    assert _FakeProcess.signals == [signal.SIGINT]  # Ctrl-C is passed on to streamlit
    cmd = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and cmd[4] == str(APP)
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert {"--server.address": "127.0.0.1", "--server.port": "8600",
            "--server.headless": "true", "--browser.gatherUsageStats": "false"}.items() <= opts.items()


def test_app_passes_sigterm_on_to_streamlit(monkeypatch):
    pytest.importorskip("streamlit", reason="xrdflow app needs streamlit")
    import os
    import signal

    class Terminated(_FakeProcess):
        def wait(self, timeout=None):
            if self.returncode is None:
                os.kill(os.getpid(), signal.SIGTERM)  # `kill` of xrdflow app
            return self.returncode

    before = signal.getsignal(signal.SIGTERM)
    procs = []
    monkeypatch.setattr(subprocess, "Popen", lambda cmd: procs.append(Terminated(cmd, 0)) or procs[-1])
    assert cli_app.cmd_app(_parser().parse_args(["app"])) == 128 + signal.SIGTERM
    assert procs[0].returncode == -signal.SIGTERM  # streamlit got it
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored


def test_app_bad_port():
    args = argparse.Namespace(host="127.0.0.1", port=0)
    has_extra = (not cli_app._missing_modules() if hasattr(cli_app, "_missing_modules")
                 else cli_app._has_streamlit())
    if has_extra:
        with pytest.raises(ValueError, match="--port"):
            cli_app.cmd_app(args)
