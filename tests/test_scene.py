"""The planner's 3D scene (xrdflow.scene.build_scene / scene_from_plan / crystal_nodes).

Ground truth is computed here from the plan dataset (R, U, k_out, path length, lens
distances) and pymatgen's lattice, and compared with the *drawn geometry* (mesh vertices
and line segments of the nodes), not with the numbers the builder stores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from xrdflow._phases import load_phase
from xrdflow._plan import plan
from xrdflow.scene import Scene, build_scene, crystal_nodes, scene_from_plan

LENS = Path(__file__).parent / "data" / "lens_id06.toml"
SI = dict(energy_kev=17.0, reflection="111", mount={"vertical": "(111)"})
X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])
Z = np.array([0.0, 0.0, 1.0])


def linbo3():
    """LiNbO3 (R3c, hexagonal setting, 30 atoms per cell)."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("R3c", Lattice.hexagonal(5.148, 13.863), ["Li", "Nb", "O"],
                                     [[0, 0, 0.2829], [0, 0, 0], [0.0492, 0.3446, 0.0647]])


# ------------------------------------------------------------------ geometry of the nodes
def arrow_direction(mesh) -> np.ndarray:
    """Unit direction of an arrow mesh: its long principal axis, pointing to the tip (the
    one vertex at the far end; the tail end has a whole ring of vertices)."""
    v = mesh.vertices - mesh.vertices.mean(axis=0)
    d = np.linalg.svd(v, full_matrices=False)[2][0]
    p = mesh.vertices @ d
    at_max = np.sum(p > p.max() - 1e-9 * np.ptp(p))
    at_min = np.sum(p < p.min() + 1e-9 * np.ptp(p))
    assert {int(at_max), int(at_min)} != {1} and 1 in (at_max, at_min)
    return d if at_max == 1 else -d


def ring_axis(mesh) -> np.ndarray:
    """Normal of a ring (torus) mesh: its smallest principal axis."""
    v = mesh.vertices - mesh.vertices.mean(axis=0)
    return np.linalg.svd(v, full_matrices=False)[2][-1]


def extent_along(mesh, direction) -> tuple[float, float]:
    p = mesh.vertices @ np.asarray(direction, float)
    return float(p.min()), float(p.max())


def components(mesh) -> list[np.ndarray]:
    """Vertex index sets of the connected pieces of a mesh (one sphere, one bond...)."""
    f = mesh.faces
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    n = len(mesh.vertices)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return [np.flatnonzero(labels == i) for i in range(count)]


def plan_row(ds, solution=0):
    r = ds.isel(energy=0, reflection=0)
    rot = r.rotation.values[solution]
    u = np.asarray(ds.attrs["mount_U"], float).reshape(3, 3)
    return r, rot, u


@pytest.fixture(scope="module")
def si_plan():
    return plan("Si", **SI, goniometer="dfxrm", surface_normal="[100]", thickness_mm=0.2,
                lens=LENS, lens_distance_mm=5000.0).compute()


@pytest.fixture(scope="module")
def si_scene(si_plan):
    return scene_from_plan(si_plan, "Si", sample_size_mm=(1.0, 1.0, 0.2))


# -------------------------------------------------------------- (a) crystal axes directions
@pytest.mark.parametrize("goniometer", ["dfxrm", "omega-chi-phi"])
def test_crystal_axes_are_R_U_lattice_vectors(goniometer):
    ds = plan("Si", **SI, goniometer=goniometer, surface_normal="[100]", thickness_mm=0.2).compute()
    _, rot, u = plan_row(ds)
    scene = scene_from_plan(ds, "Si")
    lattice = load_phase("Si").lattice.matrix
    for i, name in enumerate("abc"):
        want = rot @ u @ lattice[i]
        want /= np.linalg.norm(want)
        got = arrow_direction(scene.node(f"crystal_axis_{name}").mesh)
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert scene.node(f"crystal_axis_{name}_label").label.text == name


def test_crystal_axes_of_a_hexagonal_phase():
    ds = plan("Mg", energy_kev=30.0, reflection="10-11",
              mount={"vertical": "[0001]", "beam": "[2-1-10]"}, thickness_mm=0.2).compute()
    _, rot, u = plan_row(ds)
    scene = scene_from_plan(ds, "Mg")
    lattice = load_phase("Mg").lattice.matrix
    for i, name in enumerate("abc"):
        want = rot @ u @ lattice[i]
        np.testing.assert_allclose(arrow_direction(scene.node(f"crystal_axis_{name}").mesh),
                                   want / np.linalg.norm(want), atol=1e-9)
    assert scene.title.startswith("Mg (1 0 -1 1) at 30 keV")


# ---------------------------------------------------- (b) the inset is oriented as the sample
def plate_axes_at_zero(normal_sample):
    """(width, height, normal) columns: normal given, height = z made normal to it."""
    n = np.asarray(normal_sample, float)
    n /= np.linalg.norm(n)
    h = Z - (Z @ n) * n
    h /= np.linalg.norm(h)
    return np.column_stack([np.cross(h, n), h, n])


def test_inset_has_the_sample_orientation(si_plan, si_scene):
    _, rot, u = plan_row(si_plan)
    n0 = u @ np.array([1.0, 0.0, 0.0])  # surface normal [100], crystal -> sample frame
    plate0 = plate_axes_at_zero(n0)
    size = np.array([1.0, 1.0, 0.2])
    v = si_scene.node("sample").mesh.vertices  # box_mesh: index 4i + 2j + k
    edges = np.column_stack([v[4] - v[0], v[2] - v[0], v[1] - v[0]])
    np.testing.assert_allclose(edges, rot @ plate0 * size, atol=1e-12)
    # the rotation of the drawn plate, and the inset's cell edges under that same rotation
    r_plate = (edges / size) @ plate0.T
    np.testing.assert_allclose(r_plate, rot, atol=1e-12)
    lattice = load_phase("Si").lattice.matrix
    seg = si_scene.node("unit_cell").lines.points
    vec = seg[:, 1] - seg[:, 0]
    scale = si_scene.info["inset_scale_mm_per_A"]
    want = scale * (r_plate @ u @ lattice.T).T  # rows: a, b, c in the lab (mm)
    match = np.argmin(np.linalg.norm(vec[:, None, :] - want[None], axis=2), axis=1)
    np.testing.assert_allclose(vec, want[match], atol=1e-12)
    assert np.bincount(match, minlength=3).tolist() == [4, 4, 4]
    # the drawn block (the unit cell's edges) spans INSET_FRACTION x the largest sample size
    from xrdflow.scene.build import INSET_FRACTION

    drawn = seg.reshape(-1, 3)
    assert np.ptp(drawn, axis=0).max() == pytest.approx(INSET_FRACTION * size.max(), rel=1e-9)
    np.testing.assert_allclose(np.asarray(si_scene.info["sample_axes"]), rot @ plate0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(si_scene.info["inset_rotation"]), rot @ u, atol=1e-12)


# ------------------------------------------------------------ (c) the beam path in the plate
def drawn_path(scene, k_out, normal, t):
    lo_in, hi_in = extent_along(scene.node("beam_in_sample").mesh, X)
    lo_out, hi_out = extent_along(scene.node("beam_out_sample").mesh, k_out)
    assert hi_in == pytest.approx(0.0, abs=1e-12) and lo_out == pytest.approx(0.0, abs=1e-12)
    # the ends lie on the plate's large faces (depth t/2 from the mid-plane)
    assert abs(lo_in * (X @ normal)) == pytest.approx(t / 2, rel=1e-9)
    assert abs(hi_out * (k_out @ normal)) == pytest.approx(t / 2, rel=1e-9)
    return (hi_in - lo_in) + (hi_out - lo_out)


@pytest.mark.parametrize("phase, kwargs", [
    ("Si", dict(SI, goniometer="dfxrm", surface_normal="[100]", lens=LENS,
                lens_distance_mm=5000.0)),
    ("Al", dict(energy_kev=17.0, reflection="111", mount={"vertical": "(001)"},
                surface_normal="[210]", scattering_plane="horizontal")),
    ("LiNbO3", dict(energy_kev=30.0, reflection="104", mount={"vertical": "(001)"},
                    surface_normal="[100]", goniometer="dfxrm")),
])
def test_drawn_path_in_the_plate_is_the_sweeps_path_length(phase, kwargs):
    structure = linbo3() if phase == "LiNbO3" else phase
    size = (2.0, 1.5, 0.15)
    ds = plan(structure, **kwargs, thickness_mm=size[2]).compute()
    r, rot, u = plan_row(ds)
    assert abs(float(r.entry_angle[0]) - float(r.exit_angle[0])) > 1.0  # asymmetric
    scene = scene_from_plan(ds, structure, sample_size_mm=size)
    k_out = r.diffracted_direction.values[0]
    normal = rot @ np.asarray(ds.attrs["surface_normal_lab_at_zero"], float)
    path = drawn_path(scene, k_out, normal, size[2])
    assert path == pytest.approx(float(r.path_length[0]), rel=1e-6)
    assert scene.info["path_in_sample_mm"] == pytest.approx(path, rel=1e-12)
    assert scene.info["path_length_mm"] == pytest.approx(float(r.path_length[0]), rel=1e-12)


def test_symmetric_laue_path_is_t_over_cos_theta():
    scene = build_scene("Si", **SI, sample_size_mm=(1.0, 1.0, 0.2))
    theta = math.radians(scene.info["two_theta_deg"] / 2)
    k_out = np.asarray(scene.info["k_out"])
    normal = np.asarray(scene.info["sample_axes"])[:, 2]
    assert drawn_path(scene, k_out, normal, 0.2) == pytest.approx(0.2 / math.cos(theta), rel=1e-9)


# -------------------------------------------------------- (d) scattering plane, 2theta and G
@pytest.mark.parametrize("plane", ["vertical", "horizontal"])
@pytest.mark.parametrize("goniometer", ["dfxrm", "omega-chi-phi"])
def test_k_out_in_the_plane_at_two_theta_and_G(plane, goniometer):
    ds = plan("Al", energy_kev=17.0, reflection="1 1 1", mount={"vertical": "(001)"},
              surface_normal="[110]", scattering_plane=plane, goniometer=goniometer,
              thickness_mm=0.2).compute()
    r, rot, u = plan_row(ds)
    scene = scene_from_plan(ds, "Al")
    k_out = arrow_direction(scene.node("k_out").mesh)
    k_in = arrow_direction(scene.node("k_in").mesh)
    np.testing.assert_allclose(k_in, X, atol=1e-12)
    assert abs(k_out @ (Y if plane == "vertical" else Z)) < 1e-12
    assert k_out @ (Z if plane == "vertical" else Y) > 0  # up, or towards +y
    tt = math.degrees(math.acos(np.clip(k_in @ k_out, -1, 1)))
    assert tt == pytest.approx(float(r.two_theta), abs=1e-9)
    g = arrow_direction(scene.node("G").mesh)
    np.testing.assert_allclose(g, (k_out - k_in) / np.linalg.norm(k_out - k_in), atol=1e-9)
    recip = load_phase("Al").lattice.reciprocal_lattice.matrix  # rows 2 pi a*, b*, c*
    g_hkl = rot @ u @ (np.array([1.0, 1.0, 1.0]) @ recip)
    np.testing.assert_allclose(g, g_hkl / np.linalg.norm(g_hkl), atol=1e-9)
    # the diffracted beam (a box) runs along k_out
    v = scene.node("beam_diffracted").mesh.vertices
    np.testing.assert_allclose(np.abs(_long_axis(v) @ k_out), 1.0, atol=1e-12)
    assert "2θ" in scene.node("two_theta_label").label.text


def test_default_view_is_normal_to_the_scattering_plane():
    from xrdflow.scene.build import VIEWS, view_basis

    for plane in ("vertical", "horizontal"):
        scene = build_scene("Al", energy_kev=17.0, reflection="1 1 1",
                            mount={"vertical": "(001)"}, surface_normal="[110]",
                            scattering_plane=plane, goniometer="dfxrm")
        assert scene.info["view"] == pytest.approx(VIEWS[plane])
        eye, right, up = view_basis(**scene.info["view"])
        normal = np.cross(X, np.asarray(scene.info["k_out"]))
        normal /= np.linalg.norm(normal)
        assert abs(eye @ normal) > 0.9  # within ~25 degrees of the plane's normal
        # k_out goes up and right on the screen, the beam runs to the right
        k = np.asarray(scene.info["k_out"])
        assert k @ up > 0 and k @ right > 0 and X @ right > 0.9


def _screen_boxes(scene, names):
    from xrdflow.scene.build import view_basis

    _, right, up = view_basis(**scene.info["view"])
    mmpp = scene.info["label_mm_per_pt"]
    out = {}
    for name in names:
        lab = scene.node(name).label
        c = np.array([lab.position @ right, lab.position @ up])
        half = np.array([0.5 * 0.55 * len(lab.text) * lab.size * mmpp, 0.5 * lab.size * mmpp])
        out[name] = (c, half)
    return out, right, up


@pytest.mark.parametrize("kwargs", [
    dict(phase="Si", sample_size_mm=(2.0, 2.0, 0.1), lens=LENS, lens_distance_mm=5000.0),
    dict(phase="Al", sample_size_mm=(5.0, 5.0, 0.15)),
    dict(phase="Al", sample_size_mm=(2.0, 1.5, 0.15), scattering_plane="horizontal",
         detector_distance_mm=300.0),
])
def test_layout_in_the_default_view(kwargs):
    """The sample and inset are the centre; no two labels overlap; the inset is clear of
    the goniometer circles and above the beam."""
    kwargs = dict(kwargs)
    phase = kwargs.pop("phase")
    mount = {"vertical": "(111)"} if kwargs.get("scattering_plane") != "horizontal" else {
        "vertical": "(001)"}
    extra = {"surface_normal": "[110]"} if kwargs.get("scattering_plane") == "horizontal" else {}
    scene = build_scene(phase, energy_kev=17.0, reflection="111", mount=mount,
                        goniometer="dfxrm", **extra, **kwargs)
    big = max(kwargs["sample_size_mm"])
    names = [n.name for n in scene.nodes if n.label is not None and (
        n.name.startswith("goniometer_") or n.name in (
            "sample_label", "lens_label", "detector_label", "two_theta_label", "k_in_label",
            "k_out_label", "G_label", "crystal_label"))]
    boxes, right, up = _screen_boxes(scene, names)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ca, ha), (cb, hb) = boxes[a], boxes[b]
            assert np.any(np.abs(ca - cb) >= ha + hb), (a, b)
    # the inset: clear of every circle and above the incident beam on the screen
    rings = [n for n in scene.group("goniometer") if n.mesh is not None]
    r_max = max(n.info["radius_mm"] for n in rings)
    cell = scene.node("unit_cell").lines.points.reshape(-1, 3)
    q = np.stack([cell @ right, cell @ up], axis=1)
    assert np.hypot(q[:, 0], q[:, 1]).min() > r_max
    assert (q[:, 1] > 0.1 * big).all()
    # the whole picture stays within a few sample sizes: the sample is its centre
    det = scene.node("detector")
    assert det.info["drawn_distance_mm"] <= 6.0 * big
    assert det.info["side_mm"] <= 1.5 * big


def _long_axis(v):
    return np.linalg.svd(v - v.mean(axis=0), full_matrices=False)[2][0]


# ----------------------------------------------------------- goniometer circles at the solution
def test_goniometer_circles_are_carried_by_the_outer_ones(si_plan, si_scene):
    from xrdflow._goniometer import GONIOMETERS, axis_rotation

    _, rot, _ = plan_row(si_plan)
    g = GONIOMETERS["dfxrm"]
    e = [a.vector for a in g.axes]
    angles = [float(si_plan[n].values[0, 0, 0]) for n in g.names]
    # outermost fixed; middle turned by the outer; innermost R e3 (R3 leaves e3 as it is)
    want = [e[0], axis_rotation(e[0], math.radians(angles[0])) @ e[1], rot @ e[2]]
    for name, w, a in zip(g.names, want, angles):
        node = si_scene.node(f"goniometer_{name}")
        assert abs(ring_axis(node.mesh) @ w) == pytest.approx(1.0, abs=1e-9)
        text = si_scene.node(f"goniometer_{name}_label").label.text
        assert text == f"{ {'phi': 'φ', 'chi': 'χ', 'omega': 'ω'}[name]} = {a:.2f}°".strip()
        assert f"{name}_deg" in si_scene.info


# --------------------------------------------------------------- (e) lens and detector along k_out
def test_lens_and_detector_at_true_distances(si_plan):
    r, _, _ = plan_row(si_plan)
    scene = scene_from_plan(si_plan, "Si", compact=False)
    k_out = r.diffracted_direction.values[0]
    d1, length = float(r.d1_mm), float(r.lens_length_mm)
    lo, hi = extent_along(scene.node("lens").mesh, k_out)
    assert (lo, hi) == (pytest.approx(d1, rel=1e-9), pytest.approx(d1 + length, rel=1e-9))
    det = scene.node("detector").mesh.vertices
    assert det.mean(axis=0) @ k_out == pytest.approx(float(r.total_distance_mm), rel=1e-9)
    np.testing.assert_allclose(np.cross(det.mean(axis=0), k_out), 0.0, atol=1e-9)
    thin = np.linalg.svd(det - det.mean(axis=0), full_matrices=False)[2][-1]
    assert abs(thin @ k_out) == pytest.approx(1.0, abs=1e-12)  # a plate normal to k_out
    # the magnified beam widens to M x its start
    mag = scene.node("beam_magnified").mesh.vertices
    p = mag @ k_out
    near, far_ = mag[p < p.min() + 1e-6], mag[p > p.max() - 1e-6]
    rad = lambda pts: np.linalg.norm(np.cross(pts, k_out), axis=1).max()  # noqa: E731
    assert rad(far_) / rad(near) == pytest.approx(float(r.magnification), rel=1e-9)
    assert not any("shortened" in n for n in scene.notes)
    assert scene.info["total_distance_mm"] == pytest.approx(5000.0)


def test_compact_layout_shortens_and_says_so(si_scene, si_plan):
    r, _, _ = plan_row(si_plan)
    k_out = r.diffracted_direction.values[0]
    det = si_scene.node("detector").mesh.vertices.mean(axis=0) @ k_out
    big = 1.0  # the largest sample size (mm)
    assert det < 7.0 * big  # a few sample sizes, not 5000 mm
    assert any("shortened" in n and "4644" in n for n in si_scene.notes)
    assert any("detector 5000 mm" in n for n in si_scene.notes)
    assert any("lens" in n and "d1 " in n and "M 16" in n for n in si_scene.notes)
    assert si_scene.node("detector_label").label.text == "detector 5 m"  # short; notes: numbers
    assert si_scene.node("lens_label").label.text == (
        f"CRL ×{float(r.magnification):.3g}")
    assert si_scene.node("detector").info["shortened"] is True
    assert len(si_scene.node("beam_breaks").lines.points) == 4  # d1 and d2 gaps, 2 strokes
    # the detector plate is 1 to 1.5 sample sizes, the lens radius follows the sample size
    assert 1.0 * big <= si_scene.node("detector").info["side_mm"] <= 1.5 * big
    lens = si_scene.node("lens")
    assert lens.info["radius_mm"] <= 0.4 * big
    # the magnified beam ends just before the plate (no z-fighting with it)
    mag = si_scene.node("beam_magnified").mesh.vertices @ k_out
    plate = si_scene.node("detector").mesh.vertices @ k_out
    assert mag.max() < plate.min()
    assert plate.min() - mag.max() < 0.05 * big
    # the labels are small
    assert all(n.label.size <= 8.0 for n in si_scene.nodes if n.label is not None)
    for key in ("d1_mm", "lens_length_mm", "d2_mm", "total_distance_mm", "magnification",
                "focal_length_mm"):
        assert si_scene.info[key] == pytest.approx(float(r[key]))


def test_no_lens_detector_distance_and_schematic():
    scene = build_scene("Si", **SI, detector_distance_mm=30.0, compact=False)
    k_out = np.asarray(scene.info["k_out"])
    assert scene.node("detector").mesh.vertices.mean(axis=0) @ k_out == pytest.approx(30.0)
    assert scene.node("detector_label").label.text == "detector 30 mm"
    schematic = build_scene("Si", **SI)
    assert "not to scale" in schematic.node("detector_label").label.text
    assert any("not to scale" in n for n in schematic.notes)


# ------------------------------------------------------------------------- (f) atoms and bonds
def sphere_centres(node):
    return np.array([node.mesh.vertices[c].mean(axis=0) for c in components(node.mesh)])


def test_fcc_cell_draws_corners_and_faces():
    s = load_phase("Al")
    rot = np.linalg.qr(np.array([[2.0, 1, 0], [0, 1, 1], [1, 0, 3]]))[0]
    nodes = crystal_nodes(s, rotation=rot, origin=(1.0, 2.0, 3.0), scale_mm_per_A=0.1)
    atoms = next(n for n in nodes if n.name == "atoms_Al")
    centres = sphere_centres(atoms)
    assert len(centres) == 14
    frac = [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    frac += [[0.5, 0.5, 0], [0.5, 0.5, 1], [0.5, 0, 0.5], [0.5, 1, 0.5], [0, 0.5, 0.5],
             [1, 0.5, 0.5]]
    want = np.array([1.0, 2.0, 3.0]) + 0.1 * (np.array(frac) @ s.lattice.matrix) @ rot.T
    d = np.linalg.norm(centres[:, None] - want[None], axis=2)
    assert np.all(d.min(axis=1) < 1e-9) and np.all(d.min(axis=0) < 1e-9)
    assert atoms.material.name == "Al" and nodes.legend[0][0] == "Al"
    assert all(n.group == "crystal" for n in nodes)


def test_blocks_of_cells_count_the_shared_atoms():
    s = load_phase("Fe-bcc")
    nodes = crystal_nodes(s, rotation=np.eye(3), scale_mm_per_A=1.0, cells=(2, 1, 3), bonds=False)
    atoms = next(n for n in nodes if n.name == "atoms_Fe")
    assert len(sphere_centres(atoms)) == 3 * 2 * 4 + 2 * 1 * 3  # corners grid + body centres
    assert not any(n.name.startswith("bonds") for n in nodes)
    assert len(next(n for n in nodes if n.name == "unit_cell").lines.points) == (
        2 * 2 * 4 + 1 * 3 * 4 + 3 * 3 * 2)


def test_diamond_bonds_are_four_per_atom_at_2_35_A():
    s = load_phase("Si")
    scale = 0.1
    nodes = crystal_nodes(s, rotation=np.eye(3), scale_mm_per_A=scale)
    atoms = next(n for n in nodes if n.name == "atoms_Si")
    centres = sphere_centres(atoms)
    assert len(centres) == 18  # 8 corners + 6 faces + 4 inside
    bonds = next(n for n in nodes if n.name == "bonds_Si")
    halves = components(bonds.mesh)
    assert len(halves) == 2 * 16  # each inside atom: 4 bonds, all inside the block
    lengths = []
    for idx in halves:
        v = bonds.mesh.vertices[idx]
        lengths.append(2 * np.ptp(v @ _long_axis(v)) / scale)
    assert np.allclose(lengths, s.lattice.a * math.sqrt(3) / 4, rtol=1e-9)
    # each inside atom (fractional 1/4 or 3/4) is bonded to 4 atoms
    inside = centres[np.all((centres > 0.05) & (centres < 0.5), axis=1)]
    assert len(inside) == 4
    ends = np.concatenate([bonds.mesh.vertices[i].mean(axis=0)[None] for i in halves])
    for c in inside:  # half-bond midpoints a quarter bond away from the atom
        near = np.linalg.norm(ends - c, axis=1) < 0.3 * scale * 2.352
        assert near.sum() == 4


def test_no_bonds_beyond_the_cutoff():
    from pymatgen.core import Lattice, Structure

    cutoff = 1.2 * 2 * 1.11  # Si covalent radius 1.11 A (Cordero)
    far = Structure(Lattice.cubic(cutoff + 0.05), ["Si"], [[0, 0, 0]])
    near = Structure(Lattice.cubic(cutoff - 0.05), ["Si"], [[0, 0, 0]])
    assert not any(n.name.startswith("bonds") for n in
                   crystal_nodes(far, rotation=np.eye(3), scale_mm_per_A=1.0))
    bonded = crystal_nodes(near, rotation=np.eye(3), scale_mm_per_A=1.0)
    assert len(components(next(n for n in bonded if n.name == "bonds_Si").mesh)) == 2 * 12


def test_compound_polyhedra_and_legend_and_speed():
    s = linbo3()
    assert len(s) == 30
    crystal_nodes(s, rotation=np.eye(3), scale_mm_per_A=0.1)  # warm caches
    nodes = crystal_nodes(s, rotation=np.eye(3), scale_mm_per_A=0.1, cells=(2, 2, 2),
                          polyhedra=True)
    names = {n.name for n in nodes}
    assert {"atoms_Li", "atoms_Nb", "atoms_O", "polyhedra_Nb", "polyhedra_Li"} <= names
    assert [e for e, _ in nodes.legend] == ["Li", "Nb", "O"]
    assert all(0 <= c <= 1 for _, rgba in nodes.legend for c in rgba)
    nb = next(n for n in nodes if n.name == "polyhedra_Nb")
    assert nb.material.rgba[3] < 1  # translucent
    # NbO6 octahedra: 6 vertices, 8 triangles each
    assert len(nb.mesh.vertices) == 6 * nb.info["count"]
    assert len(nb.mesh.faces) == 8 * nb.info["count"]
    # one cell: bonds are cation-anion only (Nb-O 1.89 and 2.11 A, Li-O 2.07 and 2.24 A)
    one = crystal_nodes(s, rotation=np.eye(3), scale_mm_per_A=0.1)
    assert np.all((one.bond_lengths_a > 1.8) & (one.bond_lengths_a < 2.3))


def test_inset_scene_with_a_block_of_cells():
    scene = build_scene("Si", **SI, cells=(2, 2, 2), polyhedra=True)
    seg = scene.node("unit_cell").lines.points
    assert len(seg) == 3 * 2 * 3 * 3
    assert scene.legend[0][0] == "Si"
    assert "leader" in scene.node("crystal_leader").material.name


# ------------------------------------------------------------------------------ (g) bad inputs
@pytest.mark.parametrize("kwargs, match", [
    (dict(solution=2), "solution"),
    (dict(solution=True), "solution"),
    (dict(solution="0"), "solution"),
    (dict(sample_size_mm=(1.0, 1.0)), "sample_size_mm"),
    (dict(sample_size_mm=(1.0, -1.0, 0.2)), "sample_size_mm"),
    (dict(beam_size_mm=(0.5,)), "beam_size_mm"),
    (dict(beam_size_mm=(0.0, 0.1)), "beam_size_mm"),
    (dict(detector_distance_mm=-5.0), "detector_distance_mm"),
    (dict(cells=(0, 1, 1)), "cells"),
    (dict(compact="yes"), "compact"),
    (dict(reflection="200"), "reflection"),  # forbidden in diamond
    (dict(surface_normal="[111]"), "reflection"),  # G along the normal: no transmission
    (dict(lens=LENS), "lens_distance_mm"),
])
def test_bad_inputs_name_the_parameter(kwargs, match):
    args = dict(SI, **kwargs)
    with pytest.raises(ValueError, match=f"^{match}"):
        build_scene("Si", **args)


def test_scene_from_plan_checks_its_inputs(si_plan):
    with pytest.raises(ValueError, match="^sample_size_mm"):
        scene_from_plan(si_plan, "Si", sample_size_mm=(1.0, 1.0, 0.5))  # plan: 0.2 mm
    with pytest.raises(ValueError, match="^reflection"):
        scene_from_plan(si_plan, "Si", reflection="220")
    assert scene_from_plan(si_plan, "Si", reflection="Si 111").info["reflection"] == "Si 111"
    assert scene_from_plan(si_plan, "Si", reflection=(1, 1, 1), solution=1).info["solution"] == 1


# -------------------------------------------------------------------- (h) names, info, title
@pytest.mark.parametrize("phase, kwargs", [
    ("Si", dict(SI, goniometer="dfxrm", lens=LENS, lens_distance_mm=5000.0)),
    ("Mg", dict(energy_kev=30.0, reflection="10-11",
                mount={"vertical": "[0001]", "beam": "[2-1-10]"}, stage="omega-chi",
                scattering_plane="horizontal")),
    ("CeO2", dict(energy_kev=40.0, reflection="111", mount={"vertical": "(110)"},
                  polyhedra=True, cells=(1, 1, 2))),
])
def test_every_node_name_is_unique_and_info_complete(phase, kwargs):
    scene = build_scene(phase, **kwargs)
    assert isinstance(scene, Scene)
    names = [n.name for n in scene.nodes]
    assert len(names) == len(set(names))
    for name in ("sample", "sample_label", "beam_in", "beam_in_sample", "beam_out_sample",
                 "beam_transmitted", "beam_diffracted", "k_in", "k_out", "G", "detector",
                 "lab_x", "lab_y", "lab_z", "unit_cell", "crystal_axis_a", "crystal_axis_b",
                 "crystal_axis_c", "two_theta_label", "crystal_leader"):
        assert name in names
    groups = {n.group for n in scene.nodes}
    assert {"sample", "beam", "vectors", "goniometer", "detector", "axes", "crystal"} <= groups
    for key in ("phase", "reflection", "energy_kev", "wavelength_a", "two_theta_deg", "stage",
                "goniometer", "rotation", "mount_U", "k_out", "g_lab", "path_length_mm",
                "path_in_sample_mm", "inset_scale_mm_per_A", "inset_rotation", "sample_axes"):
        assert key in scene.info
    for angle in plan(phase, **{k: v for k, v in kwargs.items()
                                if k not in ("polyhedra", "cells", "lens", "lens_distance_mm")},
                      thickness_mm=0.2).attrs["stage_angles"]:
        assert f"{angle}_deg" in scene.info
        assert f"goniometer_{angle}" in names
    assert np.asarray(scene.info["rotation"]).shape == (3, 3)
    assert f"at {kwargs['energy_kev']:g} keV: 2θ" in scene.title
    assert scene.node("sample_label").label.text == "1 × 1 × 0.2 mm"
    lo, hi = scene.bounds()
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))


# ------------------------------------------------------------------ custom stages, plans, JSON
def test_custom_goniometer_with_a_left_handed_axis():
    from xrdflow._goniometer import as_goniometer

    gonio = as_goniometer([("mu", "y", -1), ("om", "z"), ("ch", [1, 0, 0])])
    ds = plan("Al", energy_kev=17.0, reflection="111", mount={"vertical": "(001)"},
              goniometer=gonio, thickness_mm=0.2).compute()
    _, rot, _ = plan_row(ds)
    angles = [float(ds[n].values[0, 0, 0]) for n in gonio.names]
    np.testing.assert_allclose(gonio.rotation(*angles), rot, atol=1e-9)
    scene = scene_from_plan(ds, "Al")
    assert abs(ring_axis(scene.node("goniometer_mu").mesh) @ Y) == pytest.approx(1.0, abs=1e-9)
    inner = ring_axis(scene.node("goniometer_ch").mesh)
    assert abs(inner @ (rot @ X)) == pytest.approx(1.0, abs=1e-9)
    assert scene.node("goniometer_mu_label").label.text.startswith("μ = ")
    assert "μ" in scene.title


def test_a_stage_that_cannot_reach_the_orientation_is_no_solution():
    with pytest.raises(ValueError, match="^reflection: Al 111 has no"):
        build_scene("Al", energy_kev=17.0, reflection="111", mount={"vertical": "(001)"},
                    surface_normal="[210]", goniometer=[("mu", "y"), ("omega", "z")])


def test_scene_from_a_plan_with_several_reflections_and_thicknesses():
    ds = plan("Si", energy_kev=17.0, reflection=["111", "220"], mount={"vertical": "(111)"},
              thickness_mm=[0.1, 0.2]).compute()
    with pytest.raises(ValueError, match="^reflection: the plan has 2"):
        scene_from_plan(ds, "Si")
    scene = scene_from_plan(ds, "Si", reflection="220", sample_size_mm=(1.0, 1.0, 0.1))
    r = ds.isel(energy=0).sel(reflection="Si 220", thickness=0.1)
    assert scene.info["path_length_mm"] == pytest.approx(float(r.path_length[0]), rel=1e-12)
    assert scene.info["path_in_sample_mm"] == pytest.approx(float(r.path_length[0]), rel=1e-6)
    with pytest.raises(ValueError, match="^sample_size_mm"):
        scene_from_plan(ds, "Si", reflection="111", sample_size_mm=(1.0, 1.0, 0.15))


def test_scene_info_is_plain_json(si_scene):
    import json

    json.loads(json.dumps(si_scene.info))
    json.loads(json.dumps([n.info for n in si_scene.nodes]))
    assert si_scene.title.startswith("Si (1 1 1) at 17 keV: 2θ 13.36°, φ ")


# ----------------------------------------------------------------- review fixes (regressions)
def test_fixed_stage_path_is_the_drawn_path_and_a_beam_along_the_plate_is_noted():
    size = np.array([1.0, 1.0, 0.2])
    scene = build_scene("Si", energy_kev=17.0, reflection="220", mount={"vertical": "(111)"},
                        stage="omega-chi", sample_size_mm=size)
    lo_in, _ = extent_along(scene.node("beam_in_sample").mesh, X)
    k_out = np.asarray(scene.info["k_out"])
    _, hi_out = extent_along(scene.node("beam_out_sample").mesh, k_out)
    drawn = -lo_in + hi_out  # cylinders: entry point -> origin -> exit point
    # both ends on the plate box's surface (here its side faces: the beams lie in its plane)
    axes = np.asarray(scene.node("sample").info["axes"])
    for end in (lo_in * X, hi_out * k_out):
        assert np.max(np.abs(axes.T @ end) / (0.5 * size)) == pytest.approx(1.0, rel=1e-9)
    assert abs(axes[:, 2] @ X) < 1e-6 and abs(axes[:, 2] @ k_out) < 1e-6
    path = scene.info["path_length_mm"]
    assert path == pytest.approx(drawn, rel=1e-9)
    assert path <= np.linalg.norm(size)  # inside the plate box, never ~1e15 mm
    assert "e+" not in scene.title and "(along the plate)" in scene.title
    assert any("runs along the plate" in n for n in scene.notes)


def test_fixed_stage_path_through_the_large_faces_is_the_plate_model():
    scene = build_scene("Mg", energy_kev=30.0, reflection="10-11",
                        mount={"vertical": "[0001]", "beam": "[2-1-10]"}, stage="omega",
                        sample_size_mm=(5.0, 5.0, 0.2))
    n = np.asarray(scene.info["sample_axes"])[:, 2]
    k_out = np.asarray(scene.info["k_out"])
    want = 0.1 / abs(n @ X) + 0.1 / abs(n @ k_out)
    assert scene.info["path_length_mm"] == pytest.approx(want, rel=1e-9)
    assert not any("along the plate" in m or "side face" in m for m in scene.notes)


@pytest.mark.parametrize("phase, kwargs", [
    ("Mg", dict(energy_kev=30.0, reflection="10-11", stage="omega", solution=1,
                mount={"vertical": "[0001]", "beam": "[2-1-10]"})),
    ("Mg", dict(energy_kev=30.0, reflection="10-11", stage="omega", solution=0,
                mount={"vertical": "[0001]", "beam": "[2-1-10]"})),
    ("Mg", dict(energy_kev=17.0, reflection="10-11", stage="omega", solution=1,
                mount={"vertical": "[0001]", "beam": "[2-1-10]"})),
    ("Mg", dict(energy_kev=30.0, reflection="10-11", stage="omega-chi",
                scattering_plane="horizontal",
                mount={"vertical": "[0001]", "beam": "[2-1-10]"})),
    ("Si", dict(SI, goniometer="dfxrm", solution=1)),
    ("Al", dict(energy_kev=17.0, reflection="1 1 1", mount={"vertical": "(001)"},
                surface_normal="[110]", scattering_plane="horizontal", goniometer="dfxrm")),
])
def test_default_view_follows_the_actual_scattering_plane(phase, kwargs):
    from xrdflow.scene.build import VIEWS
    from xrdflow.scene.model import view_basis

    scene = build_scene(phase, **kwargs)
    eye, right, up = view_basis(**scene.info["view"])
    normal = np.cross(X, np.asarray(scene.info["k_out"]))
    normal /= np.linalg.norm(normal)
    tilt = max(math.degrees(math.acos(abs(view_basis(**v)[0] @ n)))
               for v, n in ((VIEWS["vertical"], -Y), (VIEWS["horizontal"], Z)))
    assert math.degrees(math.acos(min(1.0, abs(eye @ normal)))) <= tilt + 1e-6
    assert X @ right > 0  # the beam runs left to right on the screen
    # the labels were placed in this view: none on top of another
    boxes, _, _ = _screen_boxes(scene, ["two_theta_label", "sample_label", "k_out_label"])
    (c1, h1), (c2, h2), (c3, h3) = boxes.values()
    for (a, ha), (b, hb) in (((c1, h1), (c2, h2)), ((c1, h1), (c3, h3)), ((c2, h2), (c3, h3))):
        assert np.any(np.abs(a - b) >= ha + hb - 1e-9)


def test_scene_of_a_plan_with_another_phase_names_the_phase(si_plan):
    with pytest.raises(ValueError, match="^phase: .* is not the plan's phase"):
        scene_from_plan(si_plan, "Al")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pymatgen on the test CIF's symmetry
def test_a_cif_is_parsed_once_and_keeps_its_debye_waller_factors(monkeypatch):
    from pymatgen.core import Structure

    cif = Path(__file__).parent / "data" / "cif" / "Al_biso.cif"
    kw = dict(energy_kev=17.0, reflection="111", mount={"vertical": "(111)"})
    ref = plan(cif, **kw, thickness_mm=0.2).compute()
    calls = []
    original = Structure.from_file.__func__
    monkeypatch.setattr(Structure, "from_file",
                        classmethod(lambda cls, *a, **k: calls.append(a) or original(cls, *a, **k)))
    scene = build_scene(cif, **kw)
    assert len(calls) == 1
    row = ref.isel(energy=0, reflection=0)
    assert scene.info["two_theta_deg"] == pytest.approx(float(row.two_theta), rel=1e-12)
    s = load_phase(cif)
    assert "b_iso" in s.site_properties
    with_dw = plan(s, **kw, thickness_mm=0.2).compute()
    np.testing.assert_allclose(with_dw.structure_factor_sq.values,
                               ref.structure_factor_sq.values, rtol=1e-12)
    assert scene.info["phase"] == ref.attrs["phase"]
    # scene_from_plan takes the parsed Structure too
    assert scene_from_plan(ref, s).info["two_theta_deg"] == scene.info["two_theta_deg"]


def test_the_goniometer_object_is_used_not_parsed_from_the_text(monkeypatch, si_plan):
    import re

    import xrdflow.scene.build as build

    monkeypatch.setattr(build, "_AXIS_RE", re.compile(r"(?!x)x"))  # reads no axis
    with pytest.raises(ValueError, match="^goniometer"):
        scene_from_plan(si_plan, "Si")
    from xrdflow._goniometer import as_goniometer

    g = as_goniometer("dfxrm")
    scene = scene_from_plan(si_plan, "Si", goniometer=g)
    for a in g.axes:
        np.testing.assert_array_equal(scene.node(f"goniometer_{a.name}").info["axis_at_zero"],
                                      np.asarray(a.vector, float))
    assert build_scene("Si", **SI, goniometer="dfxrm").node("goniometer_phi")
