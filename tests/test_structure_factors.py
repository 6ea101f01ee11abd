"""Structure factors: Waasmaier-Kirfel f0, Chantler f' and f'', Debye-Waller factors from
CIFs, settings, Friedel pairs, and the normalisation of the relative intensity.

Every reference here is computed in the test itself by an explicit sum over the atoms of
the cell (positions typed by hand, not taken from pymatgen's symmetry expansion), from
coefficients typed from the published table or from xraydb's f1/f2 called directly.
"""

from __future__ import annotations

import math
import warnings
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from xrdflow import _lattice, _scattering
from xrdflow.crystal import load_phase, reflections, select_reflections

CIF = Path(__file__).parent / "data" / "cif"

# pymatgen's notes on our small hand-written CIFs (no operators listed, no formula keys)
pytestmark = [
    pytest.mark.filterwarnings("ignore:No _symmetry_equiv_pos_as_xyz:UserWarning"),
    pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF:UserWarning"),
]

# Waasmaier & Kirfel, Acta Cryst. A51, 416 (1995), Table 1 (neutral atoms), as
# (a1..a5, b1..b5, c): f0(s) = sum_i a_i exp(-b_i s^2) + c, s = sin(theta)/lambda in 1/A.
# Typed here from the transcription of that table in xraydb 4.5.8's sqlite database
# (table "Waasmaier", columns scale = a, exponents = b, offset = c), which gives W's a1 as
# 31.5079. Typed, not read, so that a change of the library's table or of the way
# xrdflow calls it fails this test.
WK = {
    "C": ((2.657506, 1.078079, 1.490909, -4.241070, 0.713791),
          (14.780758, 0.776775, 42.086842, -0.000294, 0.239535), 4.297983),
    "Al": ((4.730796, 2.313951, 1.541980, 1.117564, 3.154754),
           (3.628931, 43.051167, 0.095960, 108.932388, 1.555918), 0.139509),
    "W": ((31.5079, 15.682498, 37.960129, 4.885509, 16.792112),
          (1.629485, 9.446448, 0.000898, 59.980675, 0.160798), -32.864574),
}

FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
BCC = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
DIAMOND = np.concatenate([FCC, FCC + 0.25])


def wk_f0(element, s):
    a, b, c = WK[element]
    s2 = np.asarray(s, dtype=float) ** 2
    return sum(ai * np.exp(-bi * s2) for ai, bi in zip(a, b)) + c


def cubic(element, a, positions):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), [element] * len(positions), positions)


def grid(a, s_max=2.0, n=14):
    """All hkl (both signs) with 0 < s <= s_max for a cubic cell of edge a."""
    hkl = np.array(list(product(range(-n, n + 1), repeat=3)), dtype=float)
    s = np.linalg.norm(hkl, axis=1) / (2 * a)
    keep = (s > 0) & (s <= s_max)
    return hkl[keep], s[keep]


def direct_f(hkl, atoms, s, energy_kev=None):
    """F by an explicit loop over the atoms: [(element, frac xyz, occupancy, B), ...]."""
    import xraydb

    f = np.zeros(len(hkl), dtype=complex)
    for el, x, occ, b in atoms:
        fa = xraydb.f0(el, s) if el not in WK else wk_f0(el, s)
        if energy_kev is not None:
            fa = fa + xraydb.f1_chantler(el, energy_kev * 1000) + 1j * xraydb.f2_chantler(
                el, energy_kev * 1000)
        f += occ * fa * np.exp(-b * s**2) * np.exp(2j * np.pi * hkl @ np.asarray(x, float))
    return f


def quiet_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pymatgen: "Spacegroup from H-M used"
        return load_phase(path)


# ------------------------------------------------------------------ (a) Waasmaier-Kirfel
@pytest.mark.parametrize("element, a, positions", [
    ("W", 3.1652, BCC), ("Al", 4.0494, FCC), ("C", 3.56679, DIAMOND)])
def test_f0_structure_factors_equal_a_direct_waasmaier_kirfel_sum(element, a, positions):
    structure = cubic(element, a, positions)
    hkl, s = grid(a)
    ours = _lattice.structure_factor_sq(structure, hkl, debye_waller=None)
    f = direct_f(hkl, [(element, x, 1.0, 0.0) for x in positions], s)
    expect = (f * f.conj()).real
    scale = expect.max()
    np.testing.assert_allclose(ours, expect, rtol=1e-10, atol=1e-10 * scale)
    assert s.max() > 1.99  # up to s = 2 1/A
    # the tabulated f0 at s = 0 is Z (to the fit's 0.1 %)
    assert wk_f0(element, 0.0) == pytest.approx({"W": 74, "Al": 13, "C": 6}[element], rel=1e-3)


def test_w_10_6_0_at_high_s_and_the_old_small_s_fit():
    # the issue: W (10,6,0), s = 1.84 1/A (reachable at 60 keV, 2theta = 44.2 deg)
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

    a = 3.1652
    structure = cubic("W", a, BCC)
    s = math.sqrt(136) / (2 * a)
    assert s == pytest.approx(1.842, abs=1e-3)
    ours = float(_lattice.structure_factor_sq(structure, [(10, 6, 0)], debye_waller=None)[0])
    assert ours == pytest.approx((2 * wk_f0("W", s)) ** 2, rel=1e-12)
    c = np.asarray(ATOMIC_SCATTERING_PARAMS["W"])
    f_old = 74 - 41.78214 * s**2 * np.sum(c[:, 0] * np.exp(-c[:, 1] * s**2))
    assert (2 * f_old) ** 2 / ours == pytest.approx(4.9, abs=0.1)  # what xrdflow reported before


# ------------------------------------------------------------------ (b) anomalous
@pytest.mark.parametrize("energy", [17.0, 30.0, 60.0])
def test_anomalous_structure_factors_equal_a_direct_sum_with_xraydb_f1_f2(energy):
    a = 3.1652
    structure = cubic("W", a, BCC)
    hkl, s = grid(a, s_max=1.5, n=10)
    ours = _lattice.structure_factor_sq(structure, hkl, energy_kev=energy, debye_waller=None)
    f = direct_f(hkl, [("W", x, 1.0, 0.0) for x in BCC], s, energy_kev=energy)
    expect = (f * f.conj()).real
    np.testing.assert_allclose(ours, expect, rtol=1e-10, atol=1e-10 * expect.max())


def test_energy_arrays_and_the_sweep_kernel():
    structure = quiet_load(CIF / "rutile_standard.cif")
    hkl = np.array([(1, 1, 0), (1, 0, 1), (2, 0, 0), (1, 1, 1), (3, 2, 1), (0, 0, 2)])
    energies = np.array([4.9, 4.97, 5.1, 17.0, 30.0, 87.1])  # around the Ti K edge (4.966)
    f2 = _lattice.structure_factor_sq(structure, hkl, energy_kev=energies)
    assert f2.shape == (len(energies), len(hkl))
    for i, e in enumerate(energies):  # a scalar energy: the same row, shape (n_hkl,)
        row = _lattice.structure_factor_sq(structure, hkl, energy_kev=float(e))
        assert row.shape == (len(hkl),)
        np.testing.assert_array_equal(row, f2[i])
    # the kernel: F(E) = f0_sum + anomalous_terms @ phase_el
    f0_sum, phase_el, elements = _scattering.scattering_terms(structure, hkl)
    assert elements == ["Ti", "O"] and phase_el.shape == (2, len(hkl))
    terms = _scattering.anomalous_terms(elements, energies)
    assert terms.shape == (len(energies), 2)
    np.testing.assert_array_equal(_scattering.f2_from_terms(f0_sum, phase_el, terms), f2)
    # the values at an energy do not depend on the other energies of the call (dask blocks)
    import xraydb

    for i, e in enumerate(energies):
        one = _scattering.anomalous_terms(elements, e)
        np.testing.assert_array_equal(one[0], terms[i])
        assert one[0, 0].real == xraydb.f1_chantler("Ti", e * 1000)  # f' alone, not Z + f'
        assert one[0, 0].imag == xraydb.f2_chantler("Ti", e * 1000)
    assert abs(terms[-1, 0].real) < 0.5  # far above the edge f' is small (Z not included)
    # no energy: f0 only, anomalous ignored
    np.testing.assert_array_equal(_lattice.structure_factor_sq(structure, hkl, anomalous=True),
                                  _scattering.f2_from_terms(f0_sum, phase_el))


def test_w_l3_edge_changes_the_structure_factor():
    import xraydb

    structure = cubic("W", 3.1652, BCC)
    e_edge = xraydb.xray_edge("W", "L3").energy / 1000  # 10.207 keV
    assert e_edge == pytest.approx(10.207, abs=1e-3)
    hkl = [(1, 1, 0), (2, 0, 0)]
    with_f = _lattice.structure_factor_sq(structure, hkl, energy_kev=e_edge, debye_waller=None)
    without = _lattice.structure_factor_sq(structure, hkl, energy_kev=e_edge, anomalous=False,
                                           debye_waller=None)
    np.testing.assert_array_equal(without, _lattice.structure_factor_sq(structure, hkl,
                                                                        debye_waller=None))
    assert np.all(with_f / without < 0.75)  # f' = -18.6 e against f0 = 61 e (110)
    # far from the edges the anomalous terms change |F|^2 by a few percent only
    far = _lattice.structure_factor_sq(structure, hkl, energy_kev=30.0, debye_waller=None)
    assert np.all(np.abs(far / without - 1) < 0.05)


def test_friedel_pairs_differ_with_anomalous_terms_and_the_family_takes_their_mean():
    # GaAs (zincblende, F-43m, not centrosymmetric) just above the As K edge (11.867 keV)
    from pymatgen.core import Lattice, Structure

    a, energy = 5.65325, 11.9
    atoms = [("Ga", x, 1.0, 0.0) for x in FCC] + [("As", x + 0.25, 1.0, 0.0) for x in FCC]
    gaas = Structure(Lattice.cubic(a), [el for el, *_ in atoms], [x for _, x, *_ in atoms])
    members = np.array(list(product((1, -1), repeat=3)), dtype=float)  # the 8 of {111}
    s = np.full(8, math.sqrt(3) / (2 * a))
    f = direct_f(members, atoms, s, energy_kev=energy)
    expect = (f * f.conj()).real
    ours = _lattice.structure_factor_sq(gaas, members, energy_kev=energy)
    np.testing.assert_allclose(ours, expect, rtol=1e-10)
    i_plus, i_minus = 0, 7  # (1,1,1) and (-1,-1,-1)
    assert abs(ours[i_plus] / ours[i_minus] - 1) > 0.02  # Bijvoet difference
    mean = _lattice.structure_factor_sq(gaas, members, energy_kev=energy, friedel_mean=True)
    np.testing.assert_allclose(mean, 0.5 * (expect[i_plus] + expect[i_minus]), rtol=1e-12)
    # reflections: one family {111}, multiplicity 8, |F|^2 the mean: m |F|^2 = sum of members
    ds = reflections(gaas, energy_kev=energy, d_min=3.0, name="GaAs")
    assert ds.reflection.values.tolist() == ["GaAs 111"]
    assert int(ds.multiplicity[0]) == 8
    assert 8 * float(ds.structure_factor_sq[0]) == pytest.approx(expect.sum(), rel=1e-12)
    sel = select_reflections(gaas, ["-1-1-1"], energy_kev=energy, name="GaAs")
    assert float(sel.structure_factor_sq[0]) == pytest.approx(float(ds.structure_factor_sq[0]),
                                                              rel=1e-12)


# ------------------------------------------------------------------ (c) Debye-Waller
def test_u_iso_from_a_cif():
    a, u = 3.1652, 0.0025
    structure = quiet_load(CIF / "W_uiso.cif")
    hkl, s = grid(a, n=12)
    ours = _lattice.structure_factor_sq(structure, hkl)  # debye_waller="cif" by default
    f = direct_f(hkl, [("W", x, 1.0, 8 * np.pi**2 * u) for x in BCC], s)
    np.testing.assert_allclose(ours, (f * f.conj()).real, rtol=1e-10,
                               atol=1e-10 * float((f * f.conj()).real.max()))
    # debye_waller=None ignores the CIF's U: the plain f0 sum
    none = _lattice.structure_factor_sq(structure, hkl, debye_waller=None)
    f0 = direct_f(hkl, [("W", x, 1.0, 0.0) for x in BCC], s)
    np.testing.assert_allclose(none, (f0 * f0.conj()).real, rtol=1e-10,
                               atol=1e-10 * float((f0 * f0.conj()).real.max()))
    high = np.argmax(np.where(ours > 1e-6 * ours.max(), s, 0))
    assert ours[high] / none[high] == pytest.approx(math.exp(-2 * 8 * np.pi**2 * u * s[high]**2))
    assert ours[high] / none[high] < 0.25  # s ~ 2: a visible factor


def test_b_iso_from_a_cif_and_reflections():
    structure = quiet_load(CIF / "Al_biso.cif")
    hkl, s = grid(4.0494, n=10)
    f = direct_f(hkl, [("Al", x, 1.0, 0.80) for x in FCC], s)
    np.testing.assert_allclose(_lattice.structure_factor_sq(structure, hkl), (f * f.conj()).real,
                               rtol=1e-10, atol=1e-10 * float((f * f.conj()).real.max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        on = reflections(CIF / "Al_biso.cif", energy_kev=30.0, d_min=0.6, anomalous=False)
        off = reflections(CIF / "Al_biso.cif", energy_kev=30.0, d_min=0.6, anomalous=False,
                          debye_waller=None)
    s_refl = 1 / (2 * on.d_spacing.values)
    np.testing.assert_allclose(on.structure_factor_sq / off.structure_factor_sq,
                               np.exp(-2 * 0.80 * s_refl**2), rtol=1e-12)
    assert on.attrs["debye_waller"] == "cif" and off.attrs["debye_waller"] == "none"
    assert on.attrs["debye_waller_b_a2"] == "Al1 Al 0.8"
    assert on.structure_factor_sq.attrs["debye_waller"] == "cif"


def test_per_site_u_two_elements_and_mixed_sites():
    # rutile: Ti and O have their own U; a swap or a single value would fail
    structure = quiet_load(CIF / "rutile_standard.cif")
    x = 0.3048
    b_ti, b_o = 8 * np.pi**2 * 0.0060, 8 * np.pi**2 * 0.0085
    atoms = [("Ti", (0, 0, 0), 1.0, b_ti), ("Ti", (0.5, 0.5, 0.5), 1.0, b_ti)] + [
        ("O", p, 1.0, b_o) for p in ((x, x, 0), (-x, -x, 0), (0.5 + x, 0.5 - x, 0.5),
                                     (0.5 - x, 0.5 + x, 0.5))]
    lat = structure.lattice.reciprocal_lattice_crystallographic.matrix
    hkl = np.array(list(product(range(-4, 5), range(-4, 5), range(-3, 4))), dtype=float)[1:]
    s = np.linalg.norm(hkl @ lat, axis=1) / 2
    f = direct_f(hkl, atoms, s, energy_kev=8.0)
    ours = _lattice.structure_factor_sq(structure, hkl, energy_kev=8.0)
    np.testing.assert_allclose(ours, (f * f.conj()).real, rtol=1e-10, atol=1e-9)
    # Fe and Ni sharing 4a with their own U: matched by position, not by pymatgen's label
    mixed = quiet_load(CIF / "FeNiO_mixed.cif")
    b = 8 * np.pi**2 * np.array([0.0100, 0.0050, 0.0080])
    atoms = [(el, p, 0.5, bb) for p in FCC for el, bb in (("Fe", b[0]), ("Ni", b[1]))]
    atoms += [("O", p + 0.5, 1.0, b[2]) for p in FCC]
    hkl, s = grid(4.20, s_max=1.2, n=10)
    f = direct_f(hkl, atoms, s)
    np.testing.assert_allclose(_lattice.structure_factor_sq(mixed, hkl), (f * f.conj()).real,
                               rtol=1e-10, atol=1e-9)


def test_anisotropic_u_gives_u_equivalent_and_missing_u_warns():
    mg = quiet_load(CIF / "Mg_uani.cif")
    u_eq = (2 * 0.0100 + 0.0120) / 3  # hexagonal, U11 = U22 = 2 U12: (2 U11 + U33) / 3
    assert _scattering.site_b_factors(mg)[0] == {"Mg": pytest.approx(8 * np.pi**2 * u_eq)}
    with pytest.warns(UserWarning, match=r"no U/B in the CIF for O1 \(O\)"):
        partial = load_phase(CIF / "FeNiO_partial.cif")
    b = _scattering.site_b_factors(partial)
    assert b[0] == {"Fe": pytest.approx(8 * np.pi**2 * 0.01),
                    "Ni": pytest.approx(8 * np.pi**2 * 0.005)}
    assert b[-1] == {}


def test_debye_waller_mappings_and_the_old_keyword():
    structure = quiet_load(CIF / "rutile_standard.cif")
    hkl = [(1, 1, 0), (1, 0, 1), (2, 1, 1), (3, 3, 2)]
    sf = _lattice.structure_factor_sq
    by_element = sf(structure, hkl, debye_waller={"Ti": 0.4, "O": 0.7})
    np.testing.assert_array_equal(sf(structure, hkl, debye_waller_factors={"Ti": 0.4, "O": 0.7}),
                                  by_element)
    # a site label wins over the element; keys of other phases are ignored
    np.testing.assert_array_equal(sf(structure, hkl, debye_waller={"O1": 0.7, "Ti": 0.4, "Mg": 9}),
                                  by_element)
    assert not np.allclose(by_element, sf(structure, hkl, debye_waller={"Ti": 0.7, "O": 0.4}))
    with pytest.raises(ValueError, match="debye_waller_factors"):
        sf(structure, hkl, debye_waller=None, debye_waller_factors={"Ti": 0.4})
    with pytest.raises(ValueError, match="debye_waller"):
        sf(structure, hkl, debye_waller="pymatgen")
    with pytest.raises(ValueError, match="debye_waller"):
        sf(structure, hkl, debye_waller={"Ti": -1.0})
    # a built-in phase (no CIF): "cif" means none
    al = load_phase("Al")
    np.testing.assert_array_equal(sf(al, hkl, debye_waller="cif"), sf(al, hkl, debye_waller=None))


def test_a_large_b_does_not_make_weak_reflections_absent():
    plain = reflections("Al", energy_kev=80.0, d_min=0.3, debye_waller=None)
    hot = reflections("Al", energy_kev=80.0, d_min=0.3, debye_waller={"Al": 5.0})
    assert hot.reflection.values.tolist() == plain.reflection.values.tolist()
    ratio = hot.structure_factor_sq.values / plain.structure_factor_sq.values
    np.testing.assert_allclose(ratio, np.exp(-2 * 5.0 / (2 * plain.d_spacing.values) ** 2),
                               rtol=1e-10)
    assert ratio.min() < 1e-10


# ------------------------------------------------------------------ (d) settings
def test_a_non_standard_setting_gives_the_same_structure_factors():
    """Rutile with axes (a, b, c) -> (c, a, b) and the origin at (1/4, 1/8, 0): hkl -> lhk."""
    std = quiet_load(CIF / "rutile_standard.cif")
    alt = quiet_load(CIF / "rutile_permuted_shifted.cif")
    assert alt.lattice.abc == pytest.approx((2.9587, 4.5937, 4.5937))
    hkl = np.array(list(product(range(-4, 5), range(-4, 5), range(-3, 4))))[1:]
    hkl_alt = hkl[:, [2, 0, 1]]
    for energy in (None, 4.97, 30.0):  # f0 only, at the Ti K edge, and above
        a = _lattice.structure_factor_sq(std, hkl, energy_kev=energy)
        b = _lattice.structure_factor_sq(alt, hkl_alt, energy_kev=energy)
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9 * a.max())
    # the Debye-Waller factors came through the CIF's (non-standard) operators
    assert sorted({tuple(d.items()) for d in _scattering.site_b_factors(alt)}) == sorted(
        {tuple(d.items()) for d in _scattering.site_b_factors(std)})
    # families: the same d, multiplicities, |F|^2 and intensities
    ra = reflections(CIF / "rutile_standard.cif", energy_kev=17.0, d_min=0.8)
    rb = reflections(CIF / "rutile_permuted_shifted.cif", energy_kev=17.0, d_min=0.8)

    def rows(ds):
        return sorted(zip(np.round(ds.d_spacing.values, 8), ds.multiplicity.values,
                          np.round(ds.structure_factor_sq.values, 6),
                          np.round(ds.intensity.values, 8)))

    assert rows(ra) == rows(rb)


# ------------------------------------------------------------------ (e) normalisation
def test_strongest_reflection_is_chosen_inside_the_two_theta_range():
    # Al 333/511 (d = 0.7793 A) at 7.956 keV sits at 2theta = 178 deg, where the
    # Lorentz factor 1/(sin^2 theta cos theta) is huge: strongest over 0-180 deg
    energy = 12.398419843320026 / (2 * 4.0494 / math.sqrt(27) * math.sin(math.radians(89.0)))
    full = reflections("Al", energy_kev=energy, two_theta_range=(0.0, 180.0))
    top = str(full.intensity.idxmax("reflection").values)
    assert float(full.two_theta.sel(reflection=top)) > 170.0
    inside = reflections("Al", energy_kev=energy, two_theta_range=(0.0, 100.0))
    assert float(inside.two_theta.max()) <= 100.0
    assert float(inside.intensity.max()) == 100.0  # the strongest *inside* the range
    # same relative scale as the full list, renormalised to the strongest inside
    ref = full.sel(reflection=inside.reflection.values)
    np.testing.assert_allclose(inside.intensity, 100 * ref.intensity / ref.intensity.max(),
                               rtol=1e-12)
    assert float(ref.intensity.max()) < 50.0  # would have been < 50 over 0-180 deg
    # q_range alike
    q_in = reflections("Al", energy_kev=energy, q_range=(0.0, 60.0))
    assert float(q_in.intensity.max()) == 100.0 and float(q_in.q.max()) <= 60.0


def test_reflections_records_the_intensity_model():
    ds = reflections("Fe-bcc", energy_kev=7.2, d_min=1.0)  # just above the Fe K edge (7.112)
    assert ds.attrs["anomalous"] == 1 and ds.attrs["debye_waller"] == "cif"
    assert ds.attrs["debye_waller_b_a2"] == "none"
    assert "Waasmaier-Kirfel" in ds.attrs["structure_factors"]
    assert "Chantler" in ds.attrs["structure_factors"]
    assert ds.structure_factor_sq.attrs["anomalous"] == 1
    assert ds.structure_factor_sq.attrs["energy_kev"] == 7.2
    off = reflections("Fe-bcc", energy_kev=7.2, d_min=1.0, anomalous=False)
    assert off.attrs["anomalous"] == 0 and "Chantler" not in off.attrs["structure_factors"]
    assert np.all(ds.structure_factor_sq.values < 0.9 * off.structure_factor_sq.values)
    with pytest.raises(ValueError, match="anomalous"):
        reflections("Fe-bcc", energy_kev=7.2, anomalous="yes")
    with pytest.raises(ValueError, match="energy_kev"):
        _scattering.anomalous_terms(["Fe"], 2000.0)


# ------------------------------------------------------------------ (e) the sweep
def test_sweep_structure_factors_over_energy_equal_a_direct_sum_in_every_chunking():
    # GaAs across the Ga (10.367) and As (11.867 keV) K edges: |F|^2 changes with energy,
    # Friedel pairs differ; the sweep gives the family's mean at every energy
    from pymatgen.core import Lattice, Structure

    from xrdflow import sweep

    a = 5.65325
    atoms = [("Ga", x, 1.0, 0.0) for x in FCC] + [("As", x + 0.25, 1.0, 0.0) for x in FCC]
    gaas = Structure(Lattice.cubic(a), [el for el, *_ in atoms], [x for _, x, *_ in atoms])
    energies = np.array([9.0, 10.3, 10.4, 11.8, 11.9, 17.0, 30.0, 87.1])
    wanted = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (4, 2, 0)]
    ds = sweep(gaas, energy_kev=energies, reflections=wanted, name="GaAs")
    assert ds.structure_factor_sq.dims == ("energy", "reflection")
    assert ds.structure_factor_sq.chunks is not None  # lazy
    got = ds.structure_factor_sq.compute()
    hkl = np.stack([ds[i].values for i in ("h", "k", "l")], axis=1).astype(float)
    s = np.linalg.norm(hkl, axis=1) / (2 * a)
    for i, e in enumerate(energies):
        fp = direct_f(hkl, atoms, s, energy_kev=e)
        fm = direct_f(-hkl, atoms, s, energy_kev=e)
        expect = 0.5 * ((fp * fp.conj()).real + (fm * fm.conj()).real)
        np.testing.assert_allclose(got.isel(energy=i), expect, rtol=1e-10)
    # bit-identical whatever the energy blocks
    one = sweep(gaas, energy_kev=energies, reflections=wanted, name="GaAs", chunks=1)
    np.testing.assert_array_equal(one.structure_factor_sq.values, got.values)
    np.testing.assert_array_equal(one.intensity.values, ds.intensity.values)
    # (200) of GaAs is the difference of Ga and As: weak, and most sensitive to the edges
    f200 = got.sel(reflection="GaAs 200")
    assert float(f200.sel(energy=11.9)) / float(f200.sel(energy=17.0)) > 1.5
    # the powder intensity is |F|^2(E) x multiplicity x LP, strongest inside the range = 100
    for e in (10.4, 30.0):
        ref = select_reflections(gaas, wanted, energy_kev=e, name="GaAs")
        np.testing.assert_allclose(ds.intensity.sel(energy=e), ref.intensity, rtol=1e-10)
        np.testing.assert_allclose(got.sel(energy=e), ref.structure_factor_sq, rtol=1e-12)
    assert ds.attrs["phase"] == "GaAs"
    assert "Chantler" in ds.structure_factor_sq.attrs["structure_factor_model"]
    assert ds.structure_factor_sq.attrs["anomalous"] == 1
    # anomalous=False: energy independent, f0 only, per reflection
    off = sweep(gaas, energy_kev=energies, reflections=wanted, name="GaAs", anomalous=False)
    assert off.structure_factor_sq.dims == ("reflection",)
    expect0 = direct_f(hkl, atoms, s)
    np.testing.assert_allclose(off.structure_factor_sq, (expect0 * expect0.conj()).real,
                               rtol=1e-10)
    assert "Chantler" not in off.structure_factor_sq.attrs["structure_factor_model"]


def test_sweep_debye_waller_and_its_errors():
    from xrdflow import sweep

    ds = sweep(CIF / "W_uiso.cif", energy_kev=[30.0, 60.0], reflections=["110", "10 6 0"],
               name="W")
    plain = sweep(CIF / "W_uiso.cif", energy_kev=[30.0, 60.0], reflections=["110", "10 6 0"],
                  name="W", debye_waller=None)
    ratio = (ds.structure_factor_sq / plain.structure_factor_sq).values
    assert ds.structure_factor_sq.attrs["debye_waller_b_a2"] == "W1 W 0.197392"
    b = 8 * math.pi**2 * 0.0025  # the CIF's U_iso
    s = 1 / (2 * ds.d_spacing.values)
    np.testing.assert_allclose(ratio, np.broadcast_to(np.exp(-2 * b * s**2), ratio.shape),
                               rtol=1e-10)
    with pytest.raises(ValueError, match="energy_kev: anomalous"):
        sweep("Fe-bcc", energy_kev=[30.0, 2000.0], reflections=["110"])
    assert sweep("Fe-bcc", energy_kev=[2000.0], reflections=["110"], anomalous=False).sizes[
        "energy"] == 1
    with pytest.raises(ValueError, match="debye_waller"):
        sweep("Fe-bcc", energy_kev=30.0, debye_waller=3.0)
