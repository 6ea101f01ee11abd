"""Tests of xrdflow.sweep: Bragg geometry over energy, absorption, orientation, laziness."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xrdflow.crystal import load_phase, reflections
from xrdflow.units import HC_KEV_A
from xrdflow._sweep import (
    Mount,
    goniometer_rotation,
    mount,
    parse_indices,
    sweep,
    sweep_table,
)
from xrdflow import write_sweep

MG_MOUNT = {"vertical": "[0001]", "beam": "[2-1-10]"}


# ------------------------------------------------------------------ the checks
def test_mg_1010_at_87_1_kev():
    ds = sweep("Mg", energy_kev=[87.1], reflections=["10-10"]).compute()
    r = ds.sel(energy=87.1, reflection="Mg 10-10")
    assert float(r.two_theta) == pytest.approx(2.935, abs=5e-4)
    assert float(r.q) == pytest.approx(22.61, abs=5e-3)
    assert float(r.bragg_angle) == pytest.approx(float(r.two_theta) / 2)


def test_bragg_angles_by_hand_over_energy():
    energies = np.array([20.0, 50.0, 87.1, 120.0])
    ds = sweep("CeO2", energy_kev=energies, d_min=1.5).compute()
    a = 5.411651
    for hkl, lab in (((1, 1, 1), "CeO2 111"), ((2, 2, 0), "CeO2 220"), ((3, 1, 1), "CeO2 311")):
        d = a / math.sqrt(sum(v * v for v in hkl))
        for e in energies:
            lam = HC_KEV_A / e
            expect = 2 * math.degrees(math.asin(lam / (2 * d)))
            assert float(ds.two_theta.sel(energy=e, reflection=lab)) == pytest.approx(expect, abs=1e-10)
    # 2theta falls with energy for every reflection
    assert np.all(np.diff(ds.two_theta.values, axis=0) < 0)
    # agrees with xrdflow.reflections at each energy
    for e in energies:
        ref = reflections("CeO2", energy_kev=e, d_min=1.5)
        np.testing.assert_allclose(ds.two_theta.sel(energy=e), ref.two_theta, rtol=1e-12)
        np.testing.assert_allclose(ds.intensity.sel(energy=e), ref.intensity, rtol=1e-10)
        assert list(ds.reflection.values) == list(ref.reflection.values)


def test_no_bragg_angle_is_nan_and_not_reachable():
    # Al 111 (d = 2.338 A) needs lambda <= 4.676 A, i.e. E >= 2.65 keV
    ds = sweep("Al", energy_kev=[2.0, 3.0], reflections=["111"], two_theta_range=(0, 180)).compute()
    assert np.isnan(float(ds.two_theta.sel(energy=2.0)[0]))
    assert not bool(ds.reachable.sel(energy=2.0)[0])
    assert np.isfinite(float(ds.two_theta.sel(energy=3.0)[0]))


def test_transmission_matches_xraydb_called_directly():
    import xraydb

    energies = np.linspace(20.0, 100.0, 9)
    thick = np.array([0.5, 2.0, 10.0])
    ds = sweep("Mg", energy_kev=energies, thickness_mm=thick, d_min=1.5).compute()
    rho = float(load_phase("Mg").density)
    mu_cm = np.array([xraydb.material_mu("Mg", e * 1000.0, density=rho) for e in energies])
    np.testing.assert_allclose(ds.attenuation_length, 10.0 / mu_cm, rtol=1e-10)
    np.testing.assert_allclose(
        ds.transmission.transpose("energy", "thickness"),
        np.exp(-mu_cm[:, None] * thick[None, :] / 10.0), rtol=1e-10)
    assert ds.reachable.dims == ("energy", "reflection", "thickness")


def test_reachable_combines_two_theta_and_transmission():
    energies = np.linspace(15.0, 100.0, 18)
    ds = sweep("Fe-bcc", energy_kev=energies, thickness_mm=[0.05, 1.0], two_theta_range=(4.0, 10.0),
               transmission_range=(0.1, 1.0), d_min=0.9).compute()
    tt_ok = (ds.two_theta >= 4.0) & (ds.two_theta <= 10.0)
    tr_ok = (ds.transmission >= 0.1) & (ds.transmission <= 1.0)
    xr.testing.assert_equal(ds.reachable, (tt_ok & tr_ok).transpose(*ds.reachable.dims))
    # 1 mm of iron at 15 keV transmits ~nothing; at 100 keV mu/rho = 0.372 cm^2/g (NIST
    # XCOM), rho = 7.87 g/cm^3: exp(-0.293) = 0.746
    assert float(ds.transmission.sel(energy=15.0, thickness=1.0)) < 1e-6
    assert float(ds.transmission.sel(energy=100.0, thickness=1.0)) == pytest.approx(0.746, abs=0.01)
    assert not bool(ds.reachable.sel(energy=15.0, thickness=1.0).any())
    assert bool(ds.reachable.sel(energy=100.0, thickness=1.0).any())


def test_sweep_is_lazy_until_computed(raise_if_dask_computes):
    with raise_if_dask_computes(0) as scheduler:
        ds = sweep("Mg", energy_kev=np.linspace(20, 100, 2000), thickness_mm=[1.0, 5.0],
                   two_theta_range=(1, 10), mount=MG_MOUNT, chunks=500)
    assert scheduler.total == 0
    for name in ("two_theta", "bragg_angle", "intensity", "attenuation_length", "transmission",
                 "reachable", "omega", "diffracted_direction", "eta"):
        assert isinstance(ds[name].data, da.Array), name
        assert ds[name].chunks[0] == (500,) * 4, name
    ds2 = ds.compute()
    assert isinstance(ds2.two_theta.data, np.ndarray)


# ------------------------------------------------------------------ orientation
def _laue_residual(ds, structure, stage):
    """max |k_out - k_in - G_lab| / |G| over all finite solutions, G rotated independently."""
    m = np.asarray(ds.attrs["mount_U"], dtype=float).reshape(3, 3)
    hkl = np.stack([ds.h.values, ds.k.values, ds.l.values], axis=1).astype(float)
    g_cart = hkl @ structure.lattice.reciprocal_lattice.matrix  # 2 pi included
    k = 2 * np.pi / (HC_KEV_A / ds.energy.values)  # (E,)
    omega = ds.omega.values  # (E,R,S)
    chi = ds.chi.values if "chi" in ds else np.zeros_like(omega)
    phi = ds.phi.values if "phi" in ds else np.zeros_like(omega)
    finite = np.isfinite(omega)
    rot = goniometer_rotation(np.where(finite, omega, 0), np.where(finite, chi, 0),
                              np.where(finite, phi, 0))  # (E,R,S,3,3)
    g_lab = np.einsum("ersij,jk,rk->ersi", rot, m, g_cart)
    k_out = k[:, None, None, None] * ds.diffracted_direction.values
    k_in = np.zeros_like(k_out)
    k_in[..., 0] = k[:, None, None]
    res = np.linalg.norm(k_out - k_in - g_lab, axis=-1) / np.linalg.norm(g_cart, axis=1)[None, :, None]
    return res[finite], finite


@pytest.mark.parametrize("phase, mnt, stage, plane", [
    ("Mg", MG_MOUNT, "omega", "vertical"),
    ("Mg", {"vertical": "(10-10)", "beam": "[0001]"}, "omega", "vertical"),
    ("Ti-hcp", {"vertical": "[0001]", "beam": "[01-10]"}, "omega-chi", "horizontal"),
    ("Fe-bcc", {"vertical": "[100]", "beam": "[001]"}, "omega-chi", "vertical"),
    ("Si", {"vertical": "[111]", "beam": "[1-10]"}, "omega-phi", "vertical"),
    ("CeO2", {"vertical": "[001]", "beam": "[100]"}, "omega-phi", "horizontal"),
])
def test_every_solution_satisfies_laue(phase, mnt, stage, plane):
    energies = np.array([17.0, 40.0, 87.1])
    ds = sweep(phase, energy_kev=energies, mount=mnt, stage=stage, scattering_plane=plane,
               d_min=0.8).compute()
    res, finite = _laue_residual(ds, load_phase(phase), stage)
    assert finite.sum() >= 10  # there are solutions to check
    assert res.max() < 1e-9
    # the diffracted beam makes 2theta with the incident one
    cos2t = ds.diffracted_direction.sel(xyz="x")
    expect = np.cos(np.radians(ds.two_theta))
    np.testing.assert_allclose(cos2t.where(np.isfinite(ds.omega)).values,
                               (expect * xr.ones_like(ds.omega)).where(np.isfinite(ds.omega)).values,
                               rtol=1e-10, atol=1e-12)
    if stage != "omega":  # fixed scattering plane
        off = "y" if plane == "vertical" else "z"
        other = ds.diffracted_direction.sel(xyz=off).values[finite]
        assert np.abs(other).max() < 1e-9
        up = ds.diffracted_direction.sel(xyz="z" if plane == "vertical" else "y").values[finite]
        assert np.all(up > 0)


def test_one_circle_omega_by_hand():
    # cubic crystal, [001] up, [100] along the beam: G(200) starts along +x; the Bragg
    # condition puts it at 90 + theta from the beam, so omega = +-(90 + theta)
    ds = sweep("Al", energy_kev=[30.0], reflections=["200", "020", "002"],
               mount={"vertical": "[001]", "beam": "[100]"}).compute()
    theta = float(ds.bragg_angle.sel(reflection="Al 200")[0])
    om = np.sort(ds.omega.sel(reflection="Al 200").values.ravel())
    np.testing.assert_allclose(om, [-(90 + theta), 90 + theta], atol=1e-9)
    # G(020) starts along +y: omega = theta or 180 - theta (G at 90 + theta from the beam)
    om = np.sort(ds.omega.sel(reflection="Al 020").values.ravel())
    np.testing.assert_allclose(om, [theta, 180 - theta], atol=1e-9)
    # G(002) is along the rotation axis: never in Bragg condition by omega alone
    assert np.all(np.isnan(ds.omega.sel(reflection="Al 002")))


def test_specific_members_have_their_own_angles():
    ds = sweep("Mg", energy_kev=[87.1], reflections=["10-10", "01-10", "Mg -1100"],
               mount=MG_MOUNT).compute()
    assert list(ds.reflection.values) == ["Mg 10-10", "Mg 01-10", "Mg -1100"]
    np.testing.assert_allclose(ds.two_theta.values[0], ds.two_theta.values[0, 0])
    om = ds.omega.values[0]
    assert not np.allclose(np.sort(om[0]), np.sort(om[1]))
    assert int(ds.multiplicity.sel(reflection="Mg 01-10")) == 6


def test_mount_and_rotation_conventions():
    m = mount("Mg", vertical="[0001]", beam="[2-1-10]")
    s = load_phase("Mg")
    c_cart = np.array([0, 0, 1.0]) @ s.lattice.matrix
    a_cart = np.array([1.0, 0, 0]) @ s.lattice.matrix
    np.testing.assert_allclose(m.matrix @ c_cart / np.linalg.norm(c_cart), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(m.matrix @ a_cart / np.linalg.norm(a_cart), [1, 0, 0], atol=1e-12)
    assert m.beam_adjustment_deg == pytest.approx(0.0, abs=1e-9)
    # not perpendicular: projected, and the adjustment is reported
    m2 = mount("Al", vertical="[001]", beam="[101]")
    assert m2.beam_adjustment_deg == pytest.approx(45.0)
    with pytest.raises(ValueError, match="parallel"):
        mount("Al", vertical="[001]", beam="[002]")
    with pytest.raises(ValueError, match="proper rotation"):
        Mount(np.diag([1.0, 1.0, -1.0]))
    r = goniometer_rotation(90.0, 90.0)  # Rz(90) Rx(90): y -> z, then z stays
    np.testing.assert_allclose(r @ [0, 1.0, 0], [0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(goniometer_rotation(0, 0, 90.0) @ [0, 0, 1.0], [1.0, 0, 0], atol=1e-12)


def test_parse_indices():
    assert parse_indices("[2-1-10]") == ("uvw", (2, -1, -1, 0))
    assert parse_indices("(111)") == ("hkl", (1, 1, 1))
    assert parse_indices("10-11") == ("hkl", (1, 0, -1, 1))
    assert parse_indices("1 10 0") == ("hkl", (1, 10, 0))
    assert parse_indices((1, 0, 0)) == ("hkl", (1, 0, 0))
    for bad in ("[12]", "abc", "(000)", "1x0"):
        with pytest.raises(ValueError):
            parse_indices(bad)
    with pytest.raises(ValueError, match="i = -"):
        sweep("Mg", energy_kev=[80.0], reflections=["1011"])


# ------------------------------------------------------------------ validation and output
@pytest.mark.parametrize("kwargs, match", [
    (dict(energy_kev=[-5.0, 10.0]), "energy_kev"),
    (dict(energy_kev=[10.0, 10.0]), "energy_kev"),
    (dict(energy_kev=[10.0], two_theta_range=(20.0, 10.0)), "two_theta_range"),
    (dict(energy_kev=[10.0], transmission_range=(0.5, 1.5)), "transmission_range"),
    (dict(energy_kev=[10.0], thickness_mm=-1.0), "thickness_mm"),
    (dict(energy_kev=[10.0], stage="kappa"), "stage"),
    (dict(energy_kev=[10.0], scattering_plane="diagonal"), "scattering_plane"),
    (dict(energy_kev=[10.0], mount={"beam": "[001]"}), "mount"),
    (dict(energy_kev=[10.0], mount={"vertical": "[001]", "beam": "[002]"}), "beam"),
    (dict(energy_kev=[10.0], mount={"vertical": "[0 0 x]"}), "direction"),
    (dict(energy_kev=[10.0], stage="shortest-path"), "mount"),
    (dict(energy_kev=[10.0], goniometer="dfxrm"), "goniometer"),
    (dict(energy_kev=[10.0], stage="shortest-path", mount={"vertical": "[001]"},
          goniometer="kappa"), "goniometer"),
    (dict(energy_kev=[10.0], wavelength_a=1.0), "wavelength_a"),
    (dict(wavelength_a=-1.0), "wavelength_a"),
    (dict(energy_kev=[10.0], reflections=["[100]"]), "reflections"),
    (dict(energy_kev=[10.0], chunks=0), "chunks"),
    (dict(energy_kev=[10.0], chunks=2.5), "chunks"),
    (dict(energy_kev=[[10.0, 20.0]]), "energy_kev"),
    (dict(energy_kev=[10.0], thickness_mm=[[1.0, 2.0]]), "thickness_mm"),
    (dict(energy_kev=[10.0], d_min=0.0), "d_min"),
    (dict(energy_kev=[10.0], reflections=["0001", "[0001]"]), "reflections"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep("Al", **kwargs)


def test_chunks_may_be_an_integral_float():
    ds = sweep("Al", energy_kev=np.linspace(20, 30, 10), chunks=4.0)
    assert ds.two_theta.chunks[0] == (4, 4, 2)


def test_every_variable_has_units_and_provenance():
    ds = sweep("Ti-hcp", energy_kev=np.linspace(40, 80, 5), thickness_mm=2.0, mount={
        "vertical": "[0001]", "beam": "[2-1-10]"}, stage="omega-chi", d_min=1.2)
    for name in list(ds.data_vars) + list(ds.coords):
        assert "units" in ds[name].attrs and "long_name" in ds[name].attrs, name
    for key in ("xrdflow_version", "phase", "two_theta_range", "mount_U", "stage"):
        assert key in ds.attrs
    assert ds.reflection.values[0] == "Ti-hcp 10-10"
    assert np.all(np.diff(ds.d_spacing.values) <= 0)


def test_sweep_table_lists_reachable_reflections():
    ds = sweep("Mg", energy_kev=np.linspace(80, 90, 11), thickness_mm=5.0,
               two_theta_range=(2.9, 3.3), mount=MG_MOUNT)
    text = sweep_table(ds, 87.1)
    lines = text.splitlines()
    # at 87 keV: 10-10 (2.94) and 0002 (3.13) only; 10-11 (3.33) only above 88 keV
    assert "87 keV" in lines[0] and "2 of 3" in lines[0]
    assert any(line.startswith("Mg 10-10") for line in lines)
    assert not any(line.startswith("Mg 10-11") for line in lines)
    assert "omega1" in lines[2]
    full = sweep_table(ds, 87.1, reachable_only=False)
    assert any(line.startswith("Mg 10-11") for line in full.splitlines())


@pytest.mark.parametrize("suffix", [".nc", ".nxs"])
def test_write_sweep(tmp_path, suffix):
    import h5py

    ds = sweep("Mg", energy_kev=np.linspace(60, 90, 4), thickness_mm=[1.0, 3.0],
               mount=MG_MOUNT, d_min=1.3)
    out = write_sweep(ds, tmp_path / f"sweep{suffix}")
    assert out.exists() and not (tmp_path / f"sweep{suffix}.partial").exists()
    if suffix == ".nc":
        back = xr.load_dataset(out)
        np.testing.assert_allclose(back.two_theta, ds.two_theta.compute())
        assert list(back.reflection.values) == list(ds.reflection.values)
        assert back.two_theta.attrs["units"] == "deg"
    else:
        with h5py.File(out) as f:
            data = f["entry/data"]
            assert f["entry"].attrs["NX_class"] == "NXentry"
            assert data.attrs["signal"] == "two_theta"
            np.testing.assert_allclose(data["two_theta"][()], ds.two_theta.compute().values)
            assert data["omega"].attrs["units"] == "deg"
            assert f["entry/sweep/program"][()].decode() == "xrdflow"
        nxcheck = shutil.which("nxcheck") or str(Path(sys.executable).with_name("nxcheck"))
        if not Path(nxcheck).exists():
            pytest.skip("nexusformat's nxcheck is not installed")
        run = subprocess.run([nxcheck, str(out)], capture_output=True, text=True, timeout=120)
        text = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
        assert "Total number of errors: 0" in text, text[-2000:]
        assert "Total number of warnings: 0" in text, text[-2000:]


# ------------------------------------------------------------------ figures and 3D exports
def test_figures(tmp_path):
    from xrdflow.plot.sweep import plot_transmission, plot_two_theta

    ds = sweep("Mg", energy_kev=np.linspace(30, 90, 31), thickness_mm=[0.5, 2.0, 10.0],
               two_theta_range=(2.0, 10.0))
    fig = plot_two_theta(ds, max_reflections=4)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 + 2  # reflections + the two range edges
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "instrument range"
    line = ax.lines[0]
    lab = line.get_label()
    np.testing.assert_allclose(line.get_ydata(), ds.two_theta.sel(reflection=lab).values)
    fig.savefig(tmp_path / "tt.pdf")
    assert (tmp_path / "tt.pdf").read_bytes()[:4] == b"%PDF"
    fig = plot_transmission(ds)
    assert len(fig.axes[0].lines) == 3
    many = sweep("Mg", energy_kev=np.linspace(30, 90, 31), thickness_mm=np.linspace(0.5, 20, 8))
    assert len(plot_transmission(many).axes) == 2  # map + colour bar
    with pytest.raises(ValueError, match="reflections"):
        plot_two_theta(ds, reflections=["Mg 99-90"])


def test_omega_stage_scene_pdf_and_gltf(tmp_path):
    """The one-circle (omega) stage in the 3D scene: the diffracted beam leaves at 2theta and
    the c axis, vertical on the mount, stays vertical under a pure omega rotation."""
    pytest.importorskip("trimesh")
    from xrdflow.scene import build_scene, save_image, write_gltf

    scene = build_scene("Mg", energy_kev=87.1, reflection="10-11", mount=MG_MOUNT, stage="omega")
    assert scene.info["two_theta_deg"] == pytest.approx(3.3256, abs=1e-3)
    kout = np.asarray(scene.info["k_out"])
    assert math.degrees(math.acos(kout[0])) == pytest.approx(scene.info["two_theta_deg"])
    c_axis = scene.node("crystal_axis_c").mesh.vertices
    tip = c_axis[np.argmax(c_axis @ [0, 0, 1])] - c_axis.mean(axis=0)
    assert np.allclose(tip[:2], 0.0, atol=1e-9 * np.linalg.norm(tip)) and tip[2] > 0
    assert save_image(scene, tmp_path / "exp.pdf").read_bytes()[:4] == b"%PDF"
    import trimesh

    loaded = trimesh.load(write_gltf(scene, tmp_path / "exp.glb"))
    names = set(loaded.graph.nodes_geometry)
    assert {"beam_in", "beam_diffracted", "sample", "atoms_Mg"} <= names
    with pytest.raises(ValueError, match="reflection: .*no omega solution"):
        build_scene("Al", energy_kev=30.0, reflection="002", stage="omega",
                    mount={"vertical": "[001]", "beam": "[100]"})

