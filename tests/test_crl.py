"""Tests of xrdflow.crl_optics: thick-lens CRL optics checked against physics done by hand.

The references are written here independently of xrdflow._crl: delta straight from xraydb,
the Be density from atomic masses and the hcp cell, and the lens as a plain Python product
of 2x2 ray transfer matrices over lenslet positions laid out by hand.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import xraydb

import xrdflow
from xrdflow._crl import crl_optics, lens_matrix, read_lens, refractive_decrement

DATA = Path(__file__).parent / "data"
ID06 = DATA / "lens_id06.toml"
BE_CELL_A3 = math.sqrt(3.0) / 2.0 * 2.2858**2 * 3.5843  # hcp Be, a = 2.2858 A, c = 3.5843 A
AVOGADRO = 6.02214076e23


# ------------------------------------------------------------------ independent references
def be_density(volume_a3: float = 16.2185) -> float:
    """g/cm^3 of 2 Be atoms in ``volume_a3`` Angstrom^3."""
    return 2 * xraydb.atomic_mass("Be") / AVOGADRO / (volume_a3 * 1e-24)


def delta_be(energy_kev: float, density: float) -> float:
    return float(xraydb.xray_delta_beta("Be", density, energy_kev * 1000.0)[0])


def matmul(p, q):
    return [[p[0][0] * q[0][0] + p[0][1] * q[1][0], p[0][0] * q[0][1] + p[0][1] * q[1][1]],
            [p[1][0] * q[0][0] + p[1][1] * q[1][0], p[1][0] * q[0][1] + p[1][1] * q[1][1]]]


def drift(length):
    return [[1.0, length], [0.0, 1.0]]


def thin_lens(f):
    return [[1.0, 0.0], [-1.0 / f, 1.0]]


def id06_positions() -> list[float]:
    """Lenslet centres of the ID06 objective (first = 0), laid out by hand."""
    first = [i * 1.6 for i in range(68)]
    start = first[-1] + 2.0
    return first + [start + j * 2.0 for j in range(20)]


def product(positions, focal_lengths):
    """Ray transfer matrix from the first to the last lenslet (plain Python loop)."""
    m = [[1.0, 0.0], [0.0, 1.0]]
    for i, (z, f) in enumerate(zip(positions, focal_lengths)):
        if i:
            m = matmul(drift(z - positions[i - 1]), m)
        m = matmul(thin_lens(f), m)
    return m


def id06_matrix(energy_kev: float):
    f1 = 50e-3 / (2.0 * delta_be(energy_kev, be_density()))  # R = 50 um, in mm
    return product(id06_positions(), [f1] * 88), f1


def imaging(m, d1, d2):
    return matmul(drift(d2), matmul(m, drift(d1)))


def mapping(radius_um=50.0, n=1, spacing=1.6, density=1.848, **series):
    table = {"radius_of_curvature_in_um": radius_um, "number_of_lenses": n,
             "lens_spacing_in_mm": spacing, "material": {"formula": "Be", "density_g_cm3": density}}
    table.update(series)
    return {"lens_series_0": table}


# ------------------------------------------------------------------ (1) one lenslet
def test_one_lenslet_focal_length_is_r_over_two_delta():
    energies = np.array([12.0, 17.0, 30.0])
    ds = crl_optics(mapping(n=1), energy_kev=energies, magnification=10.0)
    for i, e in enumerate(energies):
        delta = delta_be(e, 1.848)
        assert float(ds.delta[i, 0]) == pytest.approx(delta, rel=1e-12)
        assert float(ds.focal_length_mm[i]) == pytest.approx(0.05 / (2 * delta), rel=1e-9)
        assert float(ds.focal_length_thin_mm[i]) == pytest.approx(0.05 / (2 * delta), rel=1e-9)
    assert float(ds.lens_length_mm) == 0.0
    # a single thin lens obeys the lens equation 1/d1 + 1/d2 = 1/f with |M| = d2 / d1
    f, d1, d2 = ds.focal_length_mm.values, ds.d1_mm.values, ds.d2_mm.values
    np.testing.assert_allclose(1 / d1 + 1 / d2, 1 / f, rtol=1e-12)
    np.testing.assert_allclose(d2 / d1, 10.0, rtol=1e-12)
    np.testing.assert_allclose(ds.magnification, 10.0, rtol=1e-12)


def test_minimum_total_distance_of_a_thin_lens_is_4f_with_unit_magnification():
    # at 11 and 21 keV, t = A + D + (T - L) C comes out 4e-16 above -2 by rounding (the
    # discriminant t^2 - 4 slightly negative): clipped to 0, not NaN
    for e in (11.0, 17.0, 21.0, 30.0):
        f1 = 0.05 / (2 * delta_be(e, 1.848))
        at_min = crl_optics(mapping(n=1), energy_kev=e, total_distance_mm=4 * f1)
        assert float(at_min.magnification[0]) == pytest.approx(1.0, abs=1e-6), e
        assert float(at_min.d1_mm[0]) == pytest.approx(2 * f1, rel=1e-6), e
    f1 = 0.05 / (2 * delta_be(17.0, 1.848))
    short = crl_optics(mapping(n=1), energy_kev=[17.0], total_distance_mm=3.9 * f1)
    for name in ("d1_mm", "d2_mm", "magnification", "total_distance_mm"):
        assert np.isnan(float(short[name][0])), name
    assert np.isfinite(float(short.focal_length_mm[0]))


# ------------------------------------------------------------------ (2) thin-lens limit
def test_many_lenslets_at_a_tiny_spacing_act_as_one_thin_lens():
    n = 40
    ds = crl_optics(mapping(n=n, spacing=1e-6), energy_kev=[17.0, 25.0], total_distance_mm=5000.0)
    for i, e in enumerate((17.0, 25.0)):
        f1 = 0.05 / (2 * delta_be(e, 1.848))
        assert float(ds.focal_length_mm[i]) == pytest.approx(f1 / n, rel=1e-6)
    np.testing.assert_allclose(ds.focal_length_mm, ds.focal_length_thin_mm, rtol=1e-6)


def test_thin_sum_over_two_series_of_different_radii():
    lens = mapping(radius_um=50.0, n=10, spacing=1e-6)
    lens["separator_0"] = {"spacing_in_mm": 1e-6}
    lens["lens_series_1"] = {"radius_of_curvature_in_um": 200.0, "number_of_lenses": 30,
                             "lens_spacing_in_mm": 1e-6,
                             "material": {"formula": "Al", "density_g_cm3": 2.699}}
    ds = crl_optics(lens, energy_kev=20.0, magnification=15.0)
    d_be = delta_be(20.0, 1.848)
    d_al = float(xraydb.xray_delta_beta("Al", 2.699, 20000.0)[0])
    f = 1.0 / (10 * 2 * d_be / 0.05 + 30 * 2 * d_al / 0.2)
    assert float(ds.focal_length_thin_mm[0]) == pytest.approx(f, rel=1e-12)
    assert float(ds.focal_length_mm[0]) == pytest.approx(f, rel=1e-6)
    np.testing.assert_allclose(ds.delta[0], [d_be, d_al], rtol=1e-12)
    assert list(ds.material.values) == ["Be", "Al"]


# ------------------------------------------------------------------ (3) the ID06 objective
def test_id06_focal_length_matches_an_independent_matrix_product():
    m, f1 = id06_matrix(17.0)
    ds = crl_optics(ID06, energy_kev=17.0, total_distance_mm=5000.0)
    assert float(ds.lens_length_mm) == pytest.approx(67 * 1.6 + 2.0 + 19 * 2.0, rel=1e-12)
    thick, thin = float(ds.focal_length_mm[0]), float(ds.focal_length_thin_mm[0])
    assert thick == pytest.approx(-1.0 / m[1][0], rel=1e-9)
    assert thin == pytest.approx(f1 / 88, rel=1e-9)
    # the thick lens is markedly weaker than the thin sum (about 11 % at 17 keV)
    assert thick > 1.05 * thin


def test_single_series_focal_length_matches_the_closed_form():
    # N identical cells [T/2 drift, lens, T/2 drift]: cos(phi) = 1 - T/(2 f1) and, since a
    # drift leaves C unchanged, the effective focal length is f1 sin(phi) / sin(N phi)
    n, spacing = 88, 1.6
    ds = crl_optics(mapping(n=n, spacing=spacing), energy_kev=[15.0, 17.0, 21.0], magnification=17.0)
    for i, e in enumerate((15.0, 17.0, 21.0)):
        f1 = 0.05 / (2 * delta_be(e, 1.848))
        phi = math.acos(1 - spacing / (2 * f1))
        assert float(ds.focal_length_mm[i]) == pytest.approx(f1 * math.sin(phi) / math.sin(n * phi),
                                                             rel=1e-9)


def test_id06_total_distance_gives_an_image_with_that_total():
    m, _ = id06_matrix(17.0)
    ds = crl_optics(ID06, energy_kev=17.0, total_distance_mm=5000.0)
    d1, d2 = float(ds.d1_mm[0]), float(ds.d2_mm[0])
    assert d1 + float(ds.lens_length_mm) + d2 == pytest.approx(5000.0, rel=1e-12)
    assert float(ds.total_distance_mm[0]) == pytest.approx(5000.0, rel=1e-12)
    system = imaging(m, d1, d2)
    assert abs(system[0][1]) < 1e-9 * 5000.0  # B = 0: the sample is imaged on the detector
    assert system[0][0] < 0  # inverted
    assert float(ds.magnification[0]) == pytest.approx(-system[0][0], rel=1e-9)
    assert float(ds.magnification[0]) > 1


def test_id06_total_distance_returns_the_magnifying_of_the_two_solutions():
    # find both images by bisection on B(d1) of the hand-made product, d2 = T - L - d1
    m, _ = id06_matrix(17.0)
    free = 5000.0 - 147.2

    def b(d1):
        return imaging(m, d1, free - d1)[0][1]

    grid = np.linspace(0.0, free, 2001)
    roots = []
    for lo, hi in itertools.pairwise(grid):
        if b(lo) * b(hi) < 0:
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if b(lo) * b(mid) <= 0 else (mid, hi)
            roots.append(0.5 * (lo + hi))
    assert len(roots) == 2
    mags = [-imaging(m, r, free - r)[0][0] for r in roots]
    assert mags[0] == pytest.approx(1 / mags[1], rel=1e-6)  # reciprocal magnifications
    ds = crl_optics(ID06, energy_kev=17.0, total_distance_mm=5000.0)
    assert float(ds.d1_mm[0]) == pytest.approx(roots[0], rel=1e-9)  # sample near the lens
    assert float(ds.magnification[0]) == pytest.approx(mags[0], rel=1e-6)


def test_id06_magnification_given_is_reached():
    for e in (12.0, 17.0, 25.0):
        m, _ = id06_matrix(e)
        ds = crl_optics(ID06, energy_kev=e, magnification=18.0)
        d1, d2 = float(ds.d1_mm[0]), float(ds.d2_mm[0])
        system = imaging(m, d1, d2)
        assert abs(system[0][1]) < 1e-9 * (d1 + d2)
        assert system[0][0] == pytest.approx(-18.0, rel=1e-9)
        assert float(ds.magnification[0]) == pytest.approx(18.0, rel=1e-12)
        assert float(ds.total_distance_mm[0]) == pytest.approx(d1 + 147.2 + d2, rel=1e-12)


def test_dataset_labels():
    ds = crl_optics(ID06, energy_kev=17.0, total_distance_mm=5000.0)
    for name in list(ds.data_vars) + ["energy"]:
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"], name
    assert ds.delta.dims == ("energy", "lens_series")
    assert ds.attrs["model"] == "thick lens: ray transfer matrices through every lenslet"
    assert ds.attrs["xrdflow_version"] == xrdflow.__version__
    assert "88 lenslets" in ds.attrs["lens"]
    assert "inverted" in ds.magnification.attrs["image"]
    assert xrdflow.crl_optics is crl_optics and xrdflow.read_lens is read_lens


# ------------------------------------------------------------------ (4) materials
def test_be_density_from_the_unit_cell():
    assert f"{BE_CELL_A3:.4f}" == "16.2185"
    lens = read_lens(ID06)
    for s in lens.series:
        assert s.density_g_cm3 == pytest.approx(be_density(16.2185), rel=1e-12)
        assert s.density_g_cm3 == pytest.approx(1.85, abs=0.01)
    assert [s.number_of_lenses for s in lens.series] == [68, 20]


def test_formula_and_density_give_the_same_as_the_unit_cell():
    rho = be_density(16.2185)
    as_formula = {
        "lens_series_0": {"radius_of_curvature_in_um": 50.0, "number_of_lenses": 68,
                          "lens_spacing_in_mm": 1.6,
                          "material": {"formula": "Be", "density_g_cm3": rho}},
        "separator_0": {"spacing_in_mm": 2.0},
        "lens_series_1": {"radius_of_curvature_in_μm": 50.0, "number_of_lenses": 20,  # Greek mu
                          "lens_spacing_in_mm": 2.0,
                          "material": {"formula": "Be", "density_g_cm3": rho}},
    }
    energies = [15.0, 17.0, 20.0]
    a = crl_optics(ID06, energy_kev=energies, total_distance_mm=5000.0)
    b = crl_optics(as_formula, energy_kev=energies, total_distance_mm=5000.0)
    for name in ("focal_length_mm", "focal_length_thin_mm", "d1_mm", "d2_mm", "magnification", "delta"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, err_msg=name)


def test_bare_micro_sign_key_is_read(tmp_path):
    # TOML 1.0 wants a non-ASCII key quoted; files written by lenient tools have it bare
    text = ID06.read_text(encoding="utf-8").replace('"radius_of_curvature_in_µm"', "radius_of_curvature_in_µm")
    path = tmp_path / "bare.toml"
    path.write_text(text, encoding="utf-8")
    assert read_lens(path).series == read_lens(ID06).series


# ------------------------------------------------------------------ (5) bad inputs
def _edit(path, old, new):
    text = ID06.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize("old, new, key", [
    ('"radius_of_curvature_in_µm" = 50.0\nnumber_of_lenses = 20', '"radius_of_curvature_in_µm" = -5.0\nnumber_of_lenses = 20',
     "[lens_series_1] radius_of_curvature_in_µm"),
    ("number_of_lenses = 68", "number_of_lenses = 0", "[lens_series_0] number_of_lenses"),
    ("number_of_lenses = 68\n", "", "[lens_series_0] number_of_lenses: missing key"),
    ('atoms_in_Unit_cell = ["Be", "Be"]\nunit_cell_volume_in_AA3 = 16.2185\n\n[separator_0]',
     'atoms_in_Unit_cell = ["Be", "Xx"]\nunit_cell_volume_in_AA3 = 16.2185\n\n[separator_0]',
     "[lens_series_0.material] atoms_in_Unit_cell: unknown element 'Xx'"),
    ("[separator_0]\nspacing_in_mm = 2.0\n", "", "[separator_0] spacing_in_mm: missing key"),
    ("spacing_in_mm = 2.0", "spacing_in_mm = -2.0", "[separator_0] spacing_in_mm"),
    ("number_of_lenses = 68", "number_of_lenses = 68\nlens_spacing = 1.6", "unknown key 'lens_spacing'"),
    ("[lens_series_1", "[lens_series_2", "[lens_series_1] missing"),
    ("unit_cell_volume_in_AA3 = 16.2185\n\n[separator_0]", "\n[separator_0]",
     "[lens_series_0.material] unit_cell_volume_in_AA3: missing key"),
    ("spacing_in_mm = 2.0", "spacing_in_mm 2.0", "not a valid TOML lens file"),
])
def test_bad_lens_files_name_the_file_and_key(tmp_path, old, new, key):
    path = _edit(tmp_path / "bad_lens.toml", old, new)
    with pytest.raises(ValueError) as info:
        crl_optics(path, energy_kev=17.0, magnification=18.0)
    message = str(info.value)
    assert str(path) in message and key in message, message
    assert "\n" not in message


@pytest.mark.parametrize("lens, key", [
    (mapping(material={"formula": "Xx2", "density_g_cm3": 1.0}), "[lens_series_0.material] formula"),
    (mapping(material={"formula": "Be"}), "[lens_series_0.material] density_g_cm3: missing key"),
    (mapping(material={"formula": "Be", "density_g_cm3": 1.8, "atoms_in_Unit_cell": ["Be"]}),
     "give either"),
    (mapping(n=2.5), "[lens_series_0] number_of_lenses"),
    ({"lens_series_0": {"number_of_lenses": 1, "material": {"formula": "Be", "density_g_cm3": 1.8}}},
     "[lens_series_0] radius_of_curvature_in_µm: missing key"),
    ({}, "no [lens_series_0]"),
])
def test_bad_lens_mappings_name_the_key(lens, key):
    with pytest.raises(ValueError) as info:
        crl_optics(lens, energy_kev=17.0, magnification=18.0)
    assert key in str(info.value) and str(info.value).startswith("lens: "), str(info.value)


@pytest.mark.parametrize("kwargs, key", [
    (dict(energy_kev=-17.0, magnification=18.0), "energy_kev"),
    (dict(energy_kev=[[17.0, 18.0]], magnification=18.0), "energy_kev"),
    (dict(energy_kev=2000.0, magnification=18.0), "energy_kev"),
    (dict(energy_kev="x", magnification=18.0), "energy_kev"),
    (dict(energy_kev=17.0), "total_distance_mm, magnification"),
    (dict(energy_kev=17.0, magnification=18.0, total_distance_mm=5000.0), "total_distance_mm, magnification"),
    (dict(energy_kev=17.0, magnification=-3.0), "magnification"),
    (dict(energy_kev=17.0, total_distance_mm=0.0), "total_distance_mm"),
])
def test_bad_arguments_name_the_argument(kwargs, key):
    with pytest.raises(ValueError, match=key):
        crl_optics(ID06, **kwargs)


def test_missing_lens_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        crl_optics(tmp_path / "nowhere.toml", energy_kev=17.0, magnification=18.0)


# ------------------------------------------------------------------ (6) vectorised
def test_lens_matrix_over_an_energy_array_equals_a_loop():
    lens = read_lens(ID06)
    energies = np.array([10.0, 12.0, 15.0, 17.0, 20.0, 25.0, 35.0])
    delta = refractive_decrement(lens, energies)
    many = lens_matrix(lens, delta)
    for i in range(len(energies)):
        one = lens_matrix(lens, delta[i])
        for x, y in zip(many, one):
            assert float(x[i]) == float(y)  # same arithmetic, element by element


def test_energy_array_equals_a_loop_over_energies():
    # xraydb fits its f1 spline over the table rows spanning the energies asked for, so delta
    # at one energy moves by ~1e-11 (relative) with the other energies of the call: 1e-9 here
    energies = np.array([10.0, 12.0, 15.0, 17.0, 20.0, 25.0, 35.0])
    for kwargs in (dict(total_distance_mm=5000.0), dict(magnification=18.0)):
        many = crl_optics(ID06, energy_kev=energies, **kwargs)
        assert many.sizes["energy"] == len(energies)
        for i, e in enumerate(energies):
            one = crl_optics(ID06, energy_kev=float(e), **kwargs)
            assert one.sizes["energy"] == 1
            for name in ("focal_length_mm", "focal_length_thin_mm", "d1_mm", "d2_mm",
                         "magnification", "total_distance_mm", "delta"):
                np.testing.assert_allclose(many[name][i], one[name][0], rtol=1e-9, err_msg=name)


# ------------------------------------------------------------------ (7) DF-XRM sanity
def test_typical_dfxrm_setup_at_17_kev():
    ds = crl_optics(ID06, energy_kev=17.0, total_distance_mm=5000.0).isel(energy=0)
    f, mag = float(ds.focal_length_mm), float(ds.magnification)
    assert 200.0 < f < 300.0
    assert 10.0 < mag < 25.0
    # the CRL's principal planes nearly coincide near its middle, so the thin-lens equation with
    # the thick focal length and the full distance, |M| + 1/|M| + 2 = T / f, nearly holds
    ratio = 5000.0 / f - 2.0
    estimate = (ratio + math.sqrt(ratio**2 - 4.0)) / 2.0
    assert mag == pytest.approx(estimate, rel=0.01)
    # the thin sum would overestimate the magnification by several per cent
    ratio_thin = 5000.0 / float(ds.focal_length_thin_mm) - 2.0
    assert (ratio_thin + math.sqrt(ratio_thin**2 - 4.0)) / 2.0 > 1.05 * mag
    # the front principal plane lies inside the lens, so the sample is nearer than f to the first
    # lenslet; the detector is roughly M f behind the last
    assert 0.5 * f < float(ds.d1_mm) < f
    assert float(ds.d2_mm) == pytest.approx(mag * f, rel=0.1)


def test_no_image_is_nan_not_an_error():
    # at 5 keV the ID06 lens focuses inside itself: no sample position outside the lens works;
    # at 17 keV a 1 m sample-detector distance is too short
    ds = crl_optics(ID06, energy_kev=[5.0, 17.0, 8.0], total_distance_mm=1000.0)
    assert np.isnan(ds.d1_mm.values[:2]).all() and np.isnan(ds.magnification.values[:2]).all()
    assert np.isfinite(ds.d1_mm.values[2])
    assert np.isfinite(ds.focal_length_mm.values).all()
    m = crl_optics(ID06, energy_kev=[5.0, 17.0], magnification=18.0)
    assert np.isnan(float(m.d1_mm[0])) and np.isfinite(float(m.d1_mm[1]))
