"""Goniometers and the shortest-path Bragg solution: physics checks against first principles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdflow import sweep
from xrdflow._goniometer import GONIOMETERS, Axis, Goniometer, as_goniometer, axis_rotation
from xrdflow._mounts import goniometer_rotation, mount
from xrdflow.crystal import load_phase
from xrdflow.units import HC_KEV_A

X = np.array([1.0, 0.0, 0.0])


# ------------------------------------------------------------------ goniometers
@pytest.mark.parametrize("name", sorted(GONIOMETERS))
def test_preset_angles_invert_the_rotation(name):
    g = GONIOMETERS[name]
    rng = np.random.default_rng(3)
    a = rng.uniform(-85.0, 85.0, (2000, 3))  # middle tilt inside +-90: the branch returned
    r = g.rotation(*a.T)
    back = g.angles(r)
    np.testing.assert_allclose(back, a, atol=1e-9)
    # any rotation at all is reached, with the other middle branch when |tilt| > 90
    q, _ = np.linalg.qr(rng.normal(size=(500, 3, 3)))
    q *= np.sign(np.linalg.det(q))[:, None, None]
    angles = g.angles(q)
    assert np.all(np.isfinite(angles))
    np.testing.assert_allclose(g.rotation(*angles.T), q, atol=1e-9)
    assert np.all(np.abs(angles[:, 1]) <= 90.0 + 1e-9)


def test_omega_chi_phi_preset_is_the_sweeps_goniometer():
    r = GONIOMETERS["omega-chi-phi"].rotation(33.0, -12.0, 71.0)
    np.testing.assert_allclose(r, goniometer_rotation(33.0, -12.0, 71.0), atol=1e-14)


def test_dfxrm_preset_order_and_sense():
    g = GONIOMETERS["dfxrm"]
    assert g.names == ("phi", "chi", "omega")
    # right-handed about y: phi = 90 deg turns z into +x
    np.testing.assert_allclose(g.rotation(90.0, 0.0, 0.0) @ [0, 0, 1.0], [1, 0, 0], atol=1e-14)
    # the rocking is outermost: it tilts the (already rotated) omega axis
    r = g.rotation(10.0, 0.0, 40.0)
    np.testing.assert_allclose(r, axis_rotation([0, 1, 0], math.radians(10))
                               @ axis_rotation([0, 0, 1], math.radians(40)), atol=1e-14)


def test_custom_goniometer_with_a_left_handed_axis():
    g = as_goniometer({"name": "kappa-less", "axes": [
        {"name": "mu", "direction": "y", "sense": -1},
        {"name": "eta", "direction": [1, 0, 0]},
        {"name": "spin", "direction": "z"}]})
    np.testing.assert_allclose(g.rotation(90.0, 0, 0) @ [0, 0, 1.0], [-1, 0, 0], atol=1e-14)
    r = g.rotation(12.0, 34.0, -56.0)
    np.testing.assert_allclose(g.angles(r), [12.0, 34.0, -56.0], atol=1e-10)
    two = as_goniometer([("omega", "z"), ("chi", "x")])
    np.testing.assert_allclose(two.angles(two.rotation(20.0, 30.0)), [20.0, 30.0], atol=1e-10)
    # an orientation a two-circle stage cannot reach is NaN, not a wrong answer
    assert np.all(np.isnan(two.angles(goniometer_rotation(0.0, 0.0, 30.0))))


@pytest.mark.parametrize("bad, match", [
    ("kappa", "unknown preset"),
    ({"axes": [{"name": "a"}]}, "direction"),
    ([("a", "q")], "direction"),
    ([("a", [0, 0, 0])], "non-zero"),
    ([("a", "z", 2)], "sense"),
    ([("a", "z"), ("a", "x")], "differ"),
    ([], "one to three"),
])
def test_bad_goniometers(bad, match):
    with pytest.raises(ValueError, match=match):
        as_goniometer(bad)


def test_goniometer_dataclasses_validate():
    with pytest.raises(ValueError, match="identifier"):
        Axis("1st", "z")
    with pytest.raises(ValueError, match="angles"):
        Goniometer("g", (Axis("a", "z"),)).rotation(1.0, 2.0)


# ------------------------------------------------------------------ shortest path
def _k(energy):
    return 2.0 * np.pi / (HC_KEV_A / np.asarray(energy, dtype=float))


def _g_lab(ds, structure):
    """G_lab = R U G_cart of every solution, from the dataset's own rotation."""
    u = np.asarray(ds.attrs["mount_U"]).reshape(3, 3)
    hkl = np.stack([ds[i].values for i in "hkl"], axis=1).astype(float)
    g0 = hkl @ structure.lattice.reciprocal_lattice.matrix @ u.T
    return np.einsum("ersij,rj->ersi", ds.rotation.values, g0), g0


def _path_factor(normal, k_in_hat, k_out_hat):
    c_in, c_out = normal @ k_in_hat, normal @ k_out_hat
    ok = (c_in * c_out > 0)
    return np.where(ok, 0.5 * (1 / np.abs(np.where(ok, c_in, 1)) + 1 / np.abs(np.where(ok, c_out, 1))),
                    np.inf)


CASES = [
    ("Al", {"vertical": "[1 1 -2]"}, "vertical"),
    ("Al", {"vertical": "(111)", "beam": "[1 -1 0]"}, "vertical"),
    ("Mg", {"vertical": "[0001]", "beam": "[2-1-10]"}, "horizontal"),
    ("Ti-hcp", {"vertical": "[1 2 3]", "beam": "[0.3 -1 0.7]"}, "vertical"),
]


@pytest.mark.parametrize("phase, mnt, plane", CASES)
def test_every_solution_is_a_bragg_solution_in_the_plane(phase, mnt, plane):
    structure = load_phase(phase)
    energy = np.array([8.0, 17.0, 30.0, 60.0])
    ds = sweep(phase, energy_kev=energy, mount=mnt, stage="shortest-path",
               scattering_plane=plane, d_min=0.6).compute()
    g, _ = _g_lab(ds, structure)
    k = _k(energy)[:, None, None, None]
    k_in = k * X
    k_out = k_in + g
    found = np.isfinite(ds.path_factor.values)
    assert found.sum() > 20
    err = np.abs(np.linalg.norm(k_out, axis=-1) - k[..., 0]) / k[..., 0]
    assert np.nanmax(np.where(found, err, np.nan)) < 1e-10
    off_plane = k_out[..., 1 if plane == "vertical" else 2] / k[..., 0]
    assert np.nanmax(np.abs(np.where(found, off_plane, np.nan))) < 1e-12
    up = k_out[..., 2 if plane == "vertical" else 1]
    assert np.all(up[found] > 0)  # diffracted up (vertical) or towards +y (horizontal)
    np.testing.assert_allclose(ds.diffracted_direction.values[found],
                               (k_out / np.linalg.norm(k_out, axis=-1, keepdims=True))[found],
                               atol=1e-12)
    # 2theta of the solution is the sweep's Bragg angle
    tt = np.degrees(np.arccos(np.clip(k_out[..., 0] / np.linalg.norm(k_out, axis=-1), -1, 1)))
    np.testing.assert_allclose(tt[found], np.broadcast_to(
        ds.two_theta.values[..., None], tt.shape)[found], atol=1e-8)
    # the stage angles give back the rotation
    names = ds.attrs["stage_angles"]
    gonio = GONIOMETERS["omega-chi-phi"]
    angles = np.stack([ds[n].values for n in names], axis=-1)
    np.testing.assert_allclose(gonio.rotation(*np.moveaxis(angles[found], -1, 0)),
                               ds.rotation.values[found], atol=1e-9)


@pytest.mark.parametrize("phase, mnt, plane", CASES)
def test_no_other_rotation_about_g_gives_a_shorter_path(phase, mnt, plane):
    structure = load_phase(phase)
    energy = np.array([12.0, 40.0])
    ds = sweep(phase, energy_kev=energy, mount=mnt, stage="shortest-path",
               scattering_plane=plane, d_min=0.7).compute()
    g, _ = _g_lab(ds, structure)
    k = _k(energy)
    psi = np.radians(np.arange(0.0, 360.0, 0.05))
    checked = 0
    for e in range(len(energy)):
        for r in range(ds.sizes["reflection"]):
            for s in range(2):
                pf = float(ds.path_factor[e, r, s])
                rot = ds.rotation.values[e, r, s]
                if not np.isfinite(pf):
                    continue
                g_hat = g[e, r, s] / np.linalg.norm(g[e, r, s])
                k_out = k[e] * X + g[e, r, s]
                normal = axis_rotation(g_hat, psi) @ (rot @ X)  # every rotation about G
                scan = _path_factor(normal, X, k_out / np.linalg.norm(k_out))
                assert pf <= scan.min() + 1e-9
                assert pf == pytest.approx(scan[0], rel=1e-12)  # psi = 0: the solution
                checked += 1
    assert checked > 10


def test_al_111_with_112_up_goes_through_the_plate_at_theta():
    # Al (1,1,1) with [1,1,-2] vertical and the default exit surface [1,1,-2] x [001]:
    # the plate normal is perpendicular to G, so the solution is symmetric Laue, the beam
    # meets the normal at theta (9 deg at 17 keV), where the omega stage sends it along
    # the plate
    ds = sweep("Al", energy_kev=17.0, mount={"vertical": "[1 1 -2]"}, stage="shortest-path",
               reflections=["111"], thickness_mm=0.1).compute().isel(energy=0, reflection=0)
    theta = float(ds.bragg_angle)
    assert theta == pytest.approx(math.degrees(math.asin(HC_KEV_A / 17.0 / (2 * 4.0495 / 3**0.5))),
                                  abs=0.01)
    np.testing.assert_allclose(ds.entry_angle.values, theta, atol=1e-9)
    np.testing.assert_allclose(ds.exit_angle.values, theta, atol=1e-9)
    np.testing.assert_allclose(ds.path_factor.values, 1 / math.cos(math.radians(theta)),
                               rtol=1e-12)
    np.testing.assert_allclose(ds.path_length.values, 0.1 / math.cos(math.radians(theta)),
                               rtol=1e-12)
    mu = 1.0 / float(ds.attenuation_length)
    np.testing.assert_allclose(ds.path_transmission.values, np.exp(-mu * ds.path_length.values))


def test_reflection_normal_up_is_a_pure_rocking_on_the_dfxrm_stage():
    # up = Q, the usual DF-XRM mount: the one-circle omega stage has no solution (G on its
    # axis); the dfxrm stage rocks by theta about y with no roll and omega 0 or 180
    ds = sweep("Al", energy_kev=[17.0, 19.1], mount={"vertical": "(111)"}, reflections=["111"],
               stage="shortest-path", goniometer="dfxrm").compute().isel(reflection=0)
    theta = ds.bragg_angle.values[:, None]
    np.testing.assert_allclose(ds.phi.values, np.broadcast_to(-theta, (2, 2)), atol=1e-9)
    np.testing.assert_allclose(ds.chi.values, 0.0, atol=1e-9)
    np.testing.assert_allclose(np.abs(ds.omega.values), [[0.0, 180.0]] * 2, atol=1e-9)
    np.testing.assert_allclose(ds.entry_angle.values, np.broadcast_to(theta, (2, 2)), atol=1e-9)
    omega_only = sweep("Al", energy_kev=17.0, mount={"vertical": "(111)"},
                       reflections=["111"]).compute()
    assert np.all(np.isnan(omega_only.omega.values))


def test_no_transmission_solution_is_nan_and_surface_normal_is_used():
    # plate normal along G (a symmetric Bragg, reflection geometry): no way through
    ds = sweep("Al", energy_kev=20.0, mount={"vertical": "(111)"}, reflections=["111", "200"],
               stage="shortest-path", surface_normal="(111)").compute()
    assert np.all(np.isnan(ds.path_factor.sel(reflection="Al 111").values))
    assert np.all(np.isnan(ds.rotation.sel(reflection="Al 111").values))
    # (200) is 54.7 deg from the (111) normal: through the plate
    assert np.all(np.isfinite(ds.path_factor.sel(reflection="Al 200").values))
    assert ds.attrs["surface_normal_lab_at_zero"] == pytest.approx([0.0, 0.0, 1.0])


def test_wavelength_and_a_single_energy():
    a = sweep("Al", wavelength_a=0.5, reflections=["111"]).compute()
    b = sweep("Al", energy_kev=HC_KEV_A / 0.5, reflections=["111"]).compute()
    np.testing.assert_allclose(a.two_theta.values, b.two_theta.values, rtol=1e-14)
    assert a.wavelength.values.tolist() == pytest.approx([0.5])


def test_non_standard_setting_gives_the_same_physics(tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    # orthorhombic cell written in two settings: (a, b, c) and the axes permuted (c, a, b)
    std = Structure(Lattice.orthorhombic(3.1, 4.7, 5.9), ["Ti", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    perm = Structure(Lattice.orthorhombic(5.9, 3.1, 4.7), ["Ti", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(perm).write_file(tmp_path / "perm.cif")
    kw = dict(energy_kev=[15.0, 35.0], stage="shortest-path", thickness_mm=0.05)
    a = sweep(std, mount={"vertical": "(110)", "beam": "[1 -1 1]"},
              reflections=["110", "011", "102"], **kw).compute()
    b = sweep(str(tmp_path / "perm.cif"), mount={"vertical": "(011)", "beam": "[1 1 -1]"},
              reflections=["011", "101", "210"], **kw).compute()
    for var in ("two_theta", "path_factor", "entry_angle", "exit_angle", "path_transmission"):
        np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-9, atol=1e-9,
                                   err_msg=var)


def test_tangent_omega_solution_is_not_nan():
    # choose the energy where the omega circle is exactly tangent for Al 200 with [001] up:
    # G = 2 pi / a (1, 0, 0) lies in the horizontal plane, c = -|G| / (2 k) = -1 at
    # sin(theta) = 1 (backscattering): omega has a double root at 180 deg
    a = load_phase("Al").lattice.a
    e = HC_KEV_A / a  # lambda = a = 2 d(200): theta = 90 deg
    ds = sweep("Al", energy_kev=e, mount={"vertical": "[001]", "beam": "[100]"},
               reflections=["200"]).compute()
    om = ds.omega.values.ravel()
    assert np.all(np.isfinite(om))
    np.testing.assert_allclose(np.abs(om), 180.0, atol=1e-6)


def test_sweep_table_prints_the_stage_angles():
    from xrdflow import sweep_table

    ds = sweep("Al", energy_kev=17.0, mount={"vertical": "(111)"}, stage="shortest-path",
               goniometer="dfxrm", reflections=["111"])
    text = sweep_table(ds, 17.0)
    head = text.splitlines()[2]
    assert "phi1" in head and "omega2" in head and "path/t 1" in head
    assert mount("Al", vertical="(111)").description == "vertical (111), beam [1 -1 0]"
