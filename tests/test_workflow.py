"""xrdflow run / demo: config validation, end to end against synthetic truth, reuse on re-run,
streaming equals the plain lazy pipeline, and the same result on every backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xrdflow
from xrdflow import options
from xrdflow.workflow import SCHEMA, ConfigError, load_config, run_workflow
from xrdflow.workflow.demo import answer, demo_config_text

from conftest import write_tiffs

SIZE = (512, 512)  # the PerkinElmer panel binned 4x (0.8 mm pixels): same physics in q, fast


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    from xrdflow.synthetic import write_demo

    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder / "input", n_frames=6, shape=SIZE)
    return folder


def config_for(folder: Path, **changes) -> dict:
    import tomllib

    cfg = tomllib.loads(demo_config_text())
    cfg["compute"]["scheduler"] = "threads"
    cfg["integration"]["npt"] = 300
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            cfg[section].pop(key, None)
        else:
            cfg.setdefault(section, {})[key] = value
    return cfg


@pytest.fixture(scope="module")
def demo_run(demo_inputs, tmp_path_factory):
    """The demo config run once (ingest, calibration, reduction, figures): (config, RunResult).
    Other runs start from its raw file and geometry, so that only one test calibrates."""
    out = tmp_path_factory.mktemp("e2e") / "out"
    cfg = load_config(config_for(demo_inputs, run__output=str(out)), base_dir=demo_inputs)
    return cfg, run_workflow(cfg, echo=None)


def from_run(demo_inputs, demo_run, out: Path, **changes) -> dict:
    """The demo config on the raw file and the calibrated geometry of ``demo_run``."""
    base = demo_run[0].output
    return config_for(demo_inputs, run__output=str(out), input__frames=None, input__log=None,
                      input__raw=str(base / "raw.nxs"), geometry__calibrant_image=None,
                      geometry__calibrant=None, geometry__distance_mm=None,
                      geometry__poni=str(base / "geometry.poni"), **changes)


def test_run_end_to_end_against_truth(demo_inputs, demo_run):
    cfg, res = demo_run
    ds = res.result
    assert ds.sizes == {"frame": 6, "peak": 3}
    assert list(ds["peak"].values) == ["Mg 10-10", "Mg 0002", "Mg 10-11"]
    assert (ds["status"] == 0).all()
    truth = json.loads((demo_inputs / "input/tensile/mg_truth.json").read_text())
    cols = [truth["reflections"]["label"].index(p) for p in ds["peak"].values]
    q_true = np.asarray(truth["frames"]["ring_q_fit"])[:, cols]  # what a full-ring 1D fit sees
    # On this binned panel a 0.8 mm pixel spans ~0.29 1/nm in q, more than a peak's sigma,
    # and the synthetic image samples the rings at pixel centres: centres agree to ~1% of a
    # pixel's q span (a few 1e-4 relative; the full 2048^2 demo agrees to ~1e-6). Loaded
    # rings are also skewed (the ring mixes axial and transverse strain).
    pixel_q_span = 0.29
    np.testing.assert_allclose(ds["position"].values, q_true, atol=0.03 * pixel_q_span)
    # lattice strain against the first frame follows the truth's ring-average strain
    strain_true = q_true[0] / q_true - 1
    np.testing.assert_allclose(ds["lattice_strain"].values, strain_true, atol=5e-4)
    assert (ds["lattice_strain"].values[1:] > 5e-4).all()  # d grows under tension
    np.testing.assert_allclose(ds["applied_strain"].values, truth["frames"]["applied_strain"])
    # every output is there and reads back identical
    for key in ("raw", "geometry", "patterns", "result", "figure_strain", "figure_fits", "figure_calibration"):
        assert res.outputs[key].is_file(), key
    for key in ("figure_strain", "figure_fits", "figure_calibration"):  # and as PDF, for the logbook
        assert res.outputs[key].with_suffix(".pdf").read_bytes().startswith(b"%PDF"), key
    xr.testing.assert_identical(xrdflow.open_result(res.outputs["result"]), ds)
    pat = xrdflow.open_patterns(res.outputs["patterns"])
    assert pat.sizes["frame"] == 6 and pat.attrs["radial_unit"] == "q_nm^-1"
    assert not list(cfg.output.glob("*.partial"))
    assert "6 ok" not in res.summary and "18 ok" in res.summary
    # provenance of the whole run travels with the result
    assert json.loads(ds.attrs["run_config"])["integration"]["npt"] == 300
    assert ds.attrs["version"] == xrdflow.__version__

    again = run_workflow(cfg, echo=None)
    assert again.reused == ["ingest", "calibrate", "integrate+fit"]
    xr.testing.assert_identical(again.result, ds)


def test_streamed_run_equals_plain_lazy_pipeline(demo_inputs, demo_run, tmp_path):
    cfg = load_config(from_run(demo_inputs, demo_run, tmp_path / "out",
                               compute__batch_frames=2, integration__sectors="axial-transverse",
                               output__figures=False),
                      base_dir=demo_inputs)
    res = run_workflow(cfg, echo=None)
    out, base = tmp_path / "out", demo_run[0].output
    geometry = xrdflow.Geometry.from_poni(base / "geometry.poni")
    patterns = xrdflow.integrate(xrdflow.open_frames(base / "raw.nxs"), geometry, npt=300,
                                 radial_range=(21.0, 27.0), polarization_factor=0.99,
                                 azimuth_sectors={"axial": (0.0, 10.0), "transverse": (90.0, 10.0)})
    peaks = xrdflow.reflections("Mg", energy_kev=87.1).sel(reflection=["Mg 10-10", "Mg 0002", "Mg 10-11"])
    plain = xrdflow.fit_peaks(patterns, peaks, half_width=0.35).compute()
    for name in ("position", "sigma", "amplitude", "status"):
        np.testing.assert_array_equal(res.result[name].values, plain[name].values)
    np.testing.assert_array_equal(xrdflow.open_patterns(out / "patterns.nxs").values, patterns.values)
    # axial tension, transverse contraction under load
    last = res.result.isel(frame=-1)
    assert (last["lattice_strain"].sel(azimuth=0.0, method="nearest") > 0).all()
    assert (last["lattice_strain"].sel(azimuth=90.0, method="nearest") < 0).all()


@pytest.mark.slow
def test_same_result_threaded_distributed_and_external_scheduler(demo_inputs, demo_run, tmp_path):
    """The same run on dask's threads, a local distributed cluster, and a scheduler and a
    worker started as separate processes (as on a facility cluster): bit-identical."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "2",
                                   "--host", "127.0.0.1", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    results = {}
    try:
        from distributed import Client

        deadline = time.monotonic() + 120
        while True:  # wait until the worker has joined (bounded)
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(1, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for scheduler in ("threads", "local", address):
            name = "external" if scheduler == address else scheduler
            cfg = load_config(from_run(demo_inputs, demo_run, tmp_path / name, output__figures=False,
                                       compute__scheduler=scheduler, compute__n_workers=2,
                                       compute__dashboard=False),
                              base_dir=demo_inputs)
            results[name] = run_workflow(cfg, echo=None).result
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
    for other in ("local", "external"):
        for name in results["threads"].data_vars:
            np.testing.assert_array_equal(results["threads"][name].values, results[other][name].values,
                                          err_msg=f"{name}: threads vs {other}")


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"integration__npts": 10}, "[integration] npts: unknown key (did you mean 'npt'?)"),
        ({"integration__npt": 0}, "[integration] npt: must be a positive integer"),
        ({"integration__npt": "many"}, "[integration] npt: must be a positive integer"),
        ({"input__energy_kev": -87.1}, "[input] energy_kev: must be a positive number"),
        ({"input__energy_kev": None}, "[input] energy_kev: missing required key"),
        ({"integration__radial_range": [27.0, 21.0]}, "[integration] radial_range: low must be below high"),
        ({"input__raw": "raw.nxs"}, "[input]: give exactly one of 'frames'"),
        ({"peaks__phase": None}, "[peaks] phase: required with 'reflections'"),
        ({"output__result": "../../etc/result.nxs"}, "[output] result: must be a file name inside the output"),
        ({"compute__scheduler": "bogus"}, "[compute] scheduler"),
        ({"geometry__distance_mm": None}, "[geometry] distance_mm: required with 'calibrant_image'"),
        ({"integration__sectors": {"axial": [0.0, -5.0]}}, "[integration] sectors.axial: half width must be positive"),
        ({"strain__reference": "median"}, "[strain] reference"),
        ({"peaks__shape": "voigt"}, "[peaks] shape: must be one of 'gaussian'"),
        ({"peaks__background": "chebyshev9"}, "[peaks] background: Chebyshev order must be 0 to 4"),
        ({"peaks__share": ["width"]}, "[peaks] share: must name parameters among fwhm"),
        ({"peaks__link": "stress"}, "[peaks] link: must be one of 'strain'"),
    ],
)
def test_bad_config_names_the_key(demo_inputs, tmp_path, changes, needle):
    cfg = config_for(demo_inputs, run__output=str(tmp_path / "out"), **changes)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, base_dir=demo_inputs)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unknown_section_and_bad_toml(tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_text('[integrationn]\nnpt = 3\n')
    with pytest.raises(ConfigError, match=r"w.toml: \[integrationn\]: unknown section \(did you mean 'integration'"):
        load_config(bad)
    bad.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_cli_run_bad_config_is_one_line(tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text('[run]\noutput = "out"\n[input]\nframes = "x/*.tif"\nenergy_kev = 87.1\n'
                   '[geometry]\nponi = "g.poni"\n[integration]\nnpt = 0\n[peaks]\ncentres = [22.6]\nhalf_width = 0.3\n')
    proc = subprocess.run([sys.executable, "-m", "xrdflow.cli", "run", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "[integration] npt: must be a positive integer, got 0" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ~30 s; quick runs check the parts: test_cli_demo_calls_run_demo, test_demo_answer
def test_cli_demo_small(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xrdflow.cli", "demo", "--out", str(tmp_path / "d"),
                           "--frames", "4", "--size", "512", "--scheduler", "threads"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "is Mg 10-10 (truth: Mg 10-10" in out
    assert "fits         12: 12 ok" in out
    assert (tmp_path / "d" / "workflow.toml").read_text() == demo_config_text()
    assert (tmp_path / "d" / "run" / "result.nxs").is_file()


def test_workflow_examples_are_valid_configs():
    repo = Path(__file__).resolve().parents[1]
    for name in ("tensile_test.toml", "demo.toml"):
        cfg = load_config(repo / "workflows" / name)
        assert cfg["peaks"]["reflections"] == ["10-10", "0002", "10-11"]
    assert (repo / "workflows" / "demo.toml").read_text() == demo_config_text()


def test_dark_flat_error_models_engine_overlap_reach_the_result(demo_inputs, demo_run, tmp_path):
    """The config offers what the API does: dark, flat, error models (integration errors
    and fit weights), the engine and the overlap policy; they are applied (the result equals
    the API called with the same options) and recorded in the result's provenance."""
    base = demo_run[0].output
    frames = xrdflow.open_frames(base / "raw.nxs")
    shape = frames.shape[1:]
    yy = np.linspace(0.9, 1.1, shape[0], dtype=np.float32)[:, None]
    dark_path, flat_path = write_tiffs(tmp_path / "cal", [np.full(shape, 2.0, np.float32),
                                                          np.broadcast_to(yy, shape).astype(np.float32)],
                                       prefix="cal_")
    cfg = load_config(from_run(demo_inputs, demo_run, tmp_path / "out", output__figures=False,
                               integration__dark=dark_path.name, integration__flat=flat_path.name,
                               integration__error_model="poisson", integration__engine="xrdflow",
                               peaks__error_model="poisson", peaks__overlap="raise", compute__batch_frames=4),
                      base_dir=tmp_path / "cal")
    assert cfg["integration"]["dark"] == str(dark_path)  # relative to the config's folder
    res = run_workflow(cfg, echo=None)
    ds = res.result
    assert (ds["status"] == 0).all()
    given = json.loads(ds.attrs["run_config"])
    assert given["integration"]["dark"] == str(dark_path) and given["integration"]["flat"] == str(flat_path)
    assert given["integration"]["error_model"] == "poisson" and given["integration"]["engine"] == "xrdflow"
    assert given["peaks"]["error_model"] == "poisson" and given["peaks"]["overlap"] == "raise"
    assert given["integration"]["polarization_factor"] == 0.99  # the demo config says so
    applied = json.loads(ds.attrs["integration"])
    assert applied["dark_subtracted"] == 1 and applied["flat_applied"] == 1
    assert applied["error_model"] == "poisson" and applied["engine"] == "xrdflow"
    assert "poisson" in (ds.attrs.get("error_model"), ds.attrs.get("weights"))  # fit weights
    assert json.loads(xrdflow.open_result(res.outputs["result"]).attrs["integration"]) == applied

    geometry = xrdflow.Geometry.from_poni(base / "geometry.poni")
    plain = xrdflow.integrate(frames, geometry, npt=300, radial_range=(21.0, 27.0), polarization_factor=0.99,
                              dark=str(dark_path), flat=str(flat_path), error_model="poisson", engine="xrdflow")
    written = xrdflow.open_patterns(res.outputs["patterns"])
    np.testing.assert_array_equal(written.values, plain.values)
    # the errors were computed with the patterns, batch by batch, and written with them
    np.testing.assert_array_equal(written["I_errors"].values, plain["I_errors"].values)
    assert np.isfinite(written["I_errors"].values).all() and (written["I_errors"].values > 0).all()
    peaks = xrdflow.reflections("Mg", energy_kev=87.1).sel(reflection=["Mg 10-10", "Mg 0002", "Mg 10-11"])
    fits = xrdflow.fit_peaks(plain, peaks, half_width=0.35, overlap="raise",
                             **({"error_model": "poisson"} if "error_model" in ds.attrs else {"weights": "poisson"}))
    np.testing.assert_array_equal(ds["position"].values, fits["position"].values)


def test_schema_takes_vocabularies_and_defaults_from_options():
    check, default = SCHEMA["integration"]["polarization_factor"]
    assert default is options.DEFAULT_POLARIZATION is None  # as integrate() and the CLI
    assert SCHEMA["integration"]["method"][1] == options.DEFAULT_METHOD
    assert SCHEMA["integration"]["engine"][1] == options.DEFAULT_ENGINE
    assert SCHEMA["peaks"]["background"][1] == options.DEFAULT_BACKGROUND
    assert SCHEMA["peaks"]["overlap"][1] == options.DEFAULT_OVERLAP
    assert SCHEMA["peaks"]["max_iter"][1] == options.DEFAULT_MAX_ITER
    assert SCHEMA["input"]["compression"][1] == options.DEFAULT_COMPRESSION
    for section, key, vocabulary in [("input", "compression", options.COMPRESSIONS),
                                     ("integration", "engine", options.ENGINES),
                                     ("integration", "unit", options.INTEGRATION_UNITS),
                                     ("integration", "error_model", options.ERROR_MODELS),
                                     ("peaks", "background", options.BACKGROUNDS),
                                     ("peaks", "overlap", options.OVERLAP_POLICIES),
                                     ("peaks", "shape", options.SHAPES)]:
        with pytest.raises(ConfigError) as info:
            SCHEMA[section][key][0]("bogus", f"[{section}] {key}")
        assert str(info.value).startswith(f"[{section}] {key}: must be ")
        assert ", ".join(map(repr, vocabulary)) in str(info.value)
    with pytest.raises(ConfigError, match=r"\[integration\] polarization_factor: must be in \[-1, 1\], got 2"):
        check(2, "[integration] polarization_factor")


def test_centres_is_a_deprecated_alias_of_centers(demo_inputs, tmp_path):
    new = config_for(demo_inputs, run__output=str(tmp_path / "out"), peaks__phase=None, peaks__reflections=None,
                     peaks__centers=[22.6, 24.1])
    old = config_for(demo_inputs, run__output=str(tmp_path / "out"), peaks__phase=None, peaks__reflections=None,
                     peaks__centres=[22.6, 24.1])
    with pytest.warns(DeprecationWarning, match=r"\[peaks\] centres: deprecated; use 'centers' instead"):
        from_old = load_config(old, base_dir=demo_inputs)
    assert from_old.sections == load_config(new, base_dir=demo_inputs).sections
    assert from_old["peaks"]["centers"] == [22.6, 24.1] and "centres" not in from_old["peaks"]
    both = dict(new, peaks={**new["peaks"], "centres": [22.6]})
    with pytest.raises(ConfigError, match="give 'centers' or its old name 'centres', not both"):
        load_config(both, base_dir=demo_inputs)


def test_demo_answer(demo_inputs, demo_run):
    """The demo's answer lines, from the demo config's run, next to the truth."""
    _, res = demo_run
    truth = json.loads((demo_inputs / "input/tensile/mg_truth.json").read_text())
    cal_truth = json.loads((demo_inputs / "input/calibrant/LaB6_truth.json").read_text())
    text = answer(res.result, truth, calibration_truth=cal_truth, geometry_path=res.outputs["geometry"])
    assert "is Mg 10-10 (truth: Mg 10-10" in text
    assert "d-spacing (A)" in text and "FWHM (1/nm)" in text and "Calibration: distance" in text


def test_cli_demo_calls_run_demo(monkeypatch, tmp_path):
    import xrdflow.workflow.demo as demo_module
    from xrdflow.cli import main

    seen = {}
    monkeypatch.setattr(demo_module, "run_demo", lambda out, **kw: seen.update(out=out, **kw))
    assert main(["demo", "--out", str(tmp_path / "d"), "--frames", "4", "--size", "512",
                 "--scheduler", "threads"]) == 0
    assert seen == {"out": tmp_path / "d", "n_frames": 4, "seed": 0, "shape": (512, 512),
                    "scheduler": "threads", "progress": False}
    import xrdflow.demo  # the old module name still works

    assert xrdflow.demo.demo_config_text() == demo_config_text()


@pytest.mark.parametrize(
    "jobqueue,needle",
    [
        ({"kind": "slurm", "cores": 1, "memory": "4GB", "partition": "debug"},
         "[compute] jobqueue.partition: dask-jobqueue calls it 'queue'"),
        ({"kind": "slurm", "memory": "4GB"}, "[compute] jobqueue.cores: required"),
        ({"kind": "slurm", "cores": 1}, "[compute] jobqueue.memory: required"),
    ],
)
def test_jobqueue_checked_before_anything_runs(demo_inputs, tmp_path, jobqueue, needle):
    pytest.importorskip("dask_jobqueue")
    cfg = config_for(demo_inputs, run__output=str(tmp_path / "out"), compute__scheduler=None,
                     compute__jobqueue=jobqueue)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, base_dir=demo_inputs)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


def test_scheduler_override_replaces_the_jobqueue(demo_inputs, tmp_path, caplog):
    cfg = config_for(demo_inputs, run__output=str(tmp_path / "out"), compute__scheduler=None,
                     compute__jobqueue={"kind": "slurm", "cores": 1, "memory": "4GB", "queue": "debug"})
    with caplog.at_level("WARNING", logger="xrdflow.workflow"):
        loaded = load_config(cfg, base_dir=demo_inputs, overrides={"compute": {"scheduler": "tcp://127.0.0.1:8786"}})
    assert loaded["compute"]["jobqueue"] is None
    assert loaded["compute"]["scheduler"] == "tcp://127.0.0.1:8786"
    assert "replaces [compute] jobqueue" in caplog.text


def test_killed_run_resumes_at_the_first_batch_not_stored(demo_inputs, demo_run, tmp_path, monkeypatch):
    """integrate+fit interrupted after two batches: the rerun computes only the others, and
    its result equals an uninterrupted run's."""
    from xrdflow.nexus.azint import PatternWriter
    from xrdflow.workflow.manifest import BATCHES_NAME

    def config(out):
        return load_config(from_run(demo_inputs, demo_run, out, output__figures=False, compute__batch_frames=2,
                                    integration__frames_per_chunk=1),
                           base_dir=demo_inputs)

    whole = run_workflow(config(tmp_path / "whole"), echo=None).result
    original = PatternWriter.write
    writes = []

    def write(self, frames, values):
        writes.append(frames.start)
        if len(writes) == 3:
            raise KeyboardInterrupt  # killed while the third batch is stored
        return original(self, frames, values)

    monkeypatch.setattr(PatternWriter, "write", write)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_workflow(config(out), echo=None)
    stages = json.loads((out / "xrdflow-run.json").read_text())["stages"]
    assert stages["reduce:batches"]["done"] == 2
    assert sorted(p.name for p in (out / BATCHES_NAME).iterdir()) == ["batch-00000.npz", "batch-00001.npz"]
    assert not (out / "patterns.nxs").exists() and not (out / "result.nxs").exists()

    computed = []
    import xrdflow.workflow.stages as stages_module

    real_compute = stages_module._compute
    monkeypatch.setattr(stages_module, "_compute", lambda todo, client: computed.append(1) or real_compute(todo, client))
    monkeypatch.setattr(PatternWriter, "write", original)
    resumed = run_workflow(config(out), echo=None).result
    assert len(computed) == 1  # 6 frames in batches of 2: only the third batch computed again
    for name in whole.data_vars:
        np.testing.assert_array_equal(whole[name].values, resumed[name].values, err_msg=name)
    np.testing.assert_array_equal(xrdflow.open_patterns(out / "patterns.nxs").values,
                                  xrdflow.open_patterns(tmp_path / "whole" / "patterns.nxs").values)
    assert not (out / BATCHES_NAME).exists()
    assert "reduce:batches" not in json.loads((out / "xrdflow-run.json").read_text())["stages"]


def test_sectors_give_the_strain_tensor_file_figure_and_cli(demo_inputs, demo_run, tmp_path, capsys):
    """With enough sectors a run adds the strain tensor of each reflection (file, figure), and
    `xrdflow strain` gives the same tensor from the result file."""
    out = tmp_path / "out"
    cfg = load_config(from_run(demo_inputs, demo_run, out, integration__sectors=12), base_dir=demo_inputs)
    res = run_workflow(cfg, echo=None)
    assert res.outputs["strain_tensor"] == f"{out / 'result.nxs'}::/strain_tensor"
    assert (out / "figures" / "strain_tensor.png").stat().st_size > 0
    tensor = xrdflow.open_result(out / "result.nxs", entry="strain_tensor")
    xr.testing.assert_identical(xrdflow.open_result(out / "result.nxs"), res.result)  # the fits kept
    from nexusformat.nexus.validate import validate_file

    assert validate_file(str(out / "result.nxs"))[1] == 0  # both entries, against the base classes
    assert tensor.strain_axial.dims == ("frame", "peak") and tensor.strain_axial.shape == (6, 3)
    last = tensor.isel(frame=-1)
    assert (last.status == 0).all()
    assert (last.strain_axial > 5 * last.strain_axial_error).all()  # tension along the load
    assert (last.strain_transverse < 0).all()  # contraction across it
    assert np.all(np.abs(tensor.isel(frame=0).strain_axial) < 1e-12)  # the reference frame
    assert tensor.attrs["strain_model"] == "in-plane" and tensor.attrs["version"] == xrdflow.__version__
    assert json.loads(tensor.attrs["geometry"]) == json.loads(res.result.attrs["geometry"])
    again = run_workflow(cfg, echo=None)  # nothing changed: the tensor is reused, not refitted
    assert {"integrate+fit", "strain tensor"} <= set(again.reused)
    xr.testing.assert_identical(xrdflow.open_result(out / "result.nxs", entry="strain_tensor"), tensor)

    from xrdflow.cli import main

    assert main(["strain", str(out / "result.nxs"), "--load-azimuth", "0", "-o", str(tmp_path / "t.nxs")]) == 0
    printed = capsys.readouterr().out
    assert "6 frames x 3 reflections, 18 tensors ok" in printed and "Mg 10-10: last frame axial +" in printed
    again = xrdflow.open_result(tmp_path / "t.nxs")
    np.testing.assert_allclose(again.strain_axial.values, tensor.strain_axial.values, rtol=0, atol=1e-15)
    assert main(["strain", str(out / "result.nxs"), "--model", "sin2psi"]) == 0  # into the result file
    assert f"{out / 'result.nxs'}::/strain_tensor" in capsys.readouterr().out
    assert xrdflow.open_result(out / "result.nxs", entry="strain_tensor").attrs["strain_model"] == "sin2psi"


def test_strain_tensor_needs_sectors(demo_inputs, tmp_path):
    with pytest.raises(ConfigError, match=r"\[strain_tensor\] enabled: needs \[integration\] sectors"):
        load_config(config_for(demo_inputs, run__output=str(tmp_path / "o"), strain_tensor__enabled=True),
                    base_dir=demo_inputs)


def test_peak_shape_options_reach_the_result(demo_inputs, demo_run, tmp_path):
    """[peaks] shape, background, overlap, share and track run the general kernel in the
    streamed workflow; the result equals fit_peaks on the written patterns with the same
    options, carries the shape's variables and records the options."""
    cfg = load_config(from_run(demo_inputs, demo_run, tmp_path / "out", output__figures=False,
                               peaks__shape="pseudo_voigt", peaks__background="chebyshev2",
                               peaks__half_width=0.7, peaks__overlap="joint", peaks__share=["eta"], peaks__track=True,
                               peaks__track_every=2, compute__batch_frames=4),
                      base_dir=demo_inputs)
    res = run_workflow(cfg, echo=None)
    ds = res.result
    assert ds.attrs["shape"] == "pseudo_voigt" and ds.attrs["background_model"] == "chebyshev2"
    assert ds.attrs["overlap"] == "joint" and ds.attrs["track"] == 1 and ds.attrs["track_every"] == 2
    assert {"eta", "eta_error", "area", "integral_breadth", "group"} <= set(ds.variables)
    assert (ds["status"] == 0).mean() > 0.9
    written = xrdflow.open_patterns(res.outputs["patterns"])
    peaks = xrdflow.reflections("Mg", energy_kev=87.1).sel(reflection=["Mg 10-10", "Mg 0002", "Mg 10-11"])
    fits = xrdflow.fit_peaks(written, peaks, half_width=0.7, shape="pseudo_voigt", background="chebyshev2",
                             overlap="joint", share="eta", track=True, track_every=2)
    for name in ("position", "eta", "area", "status"):
        np.testing.assert_array_equal(ds[name].values, fits[name].values, err_msg=name)
    back = xrdflow.open_result(res.outputs["result"])
    np.testing.assert_array_equal(back["eta"].values, ds["eta"].values)
