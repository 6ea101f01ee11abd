"""The scene renderers: plotly figure, matplotlib image, glTF file, on hand-made scenes."""

from __future__ import annotations

import io
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import xrdflow.scene
from xrdflow.scene.model import (Label, Lines, Material, Mesh, Node, Scene, arrow_mesh, box_mesh,
                                 ring_mesh, sphere_mesh)

RED = Material("sample red", (1.0, 0.0, 0.0, 1.0))
BLUE = Material("beam blue", (0.0, 0.2, 1.0, 1.0))
GREEN = Material("ring green", (0.0, 0.8, 0.0, 1.0))
GLASS = Material("detector glass", (0.5, 0.5, 0.6, 0.35))
BLACK = Material("ink", (0.0, 0.0, 0.0, 1.0))


def _scene(**kw) -> Scene:
    """Sample box, beam arrow, sphere, ring, translucent detector, axes lines, labels."""
    nodes = (
        Node("sample", "sample", RED, mesh=box_mesh((0, 0, 0), np.diag([1.0, 2.0, 1.5]))),
        Node("beam", "beam", BLUE, mesh=arrow_mesh((-20, 0, 0), (-1.5, 0, 0), 0.3)),
        Node("atom", "crystal", GREEN, mesh=sphere_mesh((0, 6, 4), 1.5, subdivisions=2)),
        Node("omega", "goniometer", GREEN, mesh=ring_mesh((0, 0, -4), (0, 0, 1), 8.0, 0.5)),
        Node("detector", "detector", GLASS,
             mesh=box_mesh((25, 0, 0), np.diag([0.3, 6.0, 6.0]))),
        Node("lab axes", "axes", BLACK,
             lines=Lines([[[0, 0, 0], [5, 0, 0]], [[0, 0, 0], [0, 5, 0]], [[0, 0, 0], [0, 0, 5]]],
                         width=1.5)),
        Node("label x", "labels", BLACK, label=Label((6, 0, 0), "x (beam)", size=8)),
        Node("label z", "labels", BLACK, label=Label((0, 0, 6), "z (up)", size=8)),
    )
    defaults = dict(title="hand-made scene", info={"energy_kev": np.float64(17.0),
                                                   "hkl": np.array([1, 1, 1]),
                                                   "nothing": float("nan")},
                    legend=tuple((m.name, m.rgba) for m in (RED, BLUE, GREEN, GLASS)),
                    notes=("detector distance not to scale",))
    defaults.update(kw)
    return Scene(nodes, **defaults)


def _boxes(*specs) -> Scene:
    """One opaque box per (name, material, centre), 2 mm cubes."""
    return Scene(tuple(Node(n, "sample", m, mesh=box_mesh(c, np.eye(3))) for n, m, c in specs),
                 "boxes")


def _big_scene(n_spheres: int = 6) -> Scene:
    """About 30k triangles: ``n_spheres`` icospheres of 5120 triangles each and a box."""
    ball = sphere_mesh((0, 0, 0), 1.2, subdivisions=4)
    nodes = [Node(f"ball {i}", "crystal", GREEN,
                  mesh=Mesh(ball.vertices + [3.0 * i, 0, 0], ball.faces))
             for i in range(n_spheres)]
    nodes.append(Node("sample", "sample", RED, mesh=box_mesh((0, 5, 0), np.eye(3))))
    return Scene(tuple(nodes), "big")


# ---------------------------------------------------------------------------------- plotly

def test_plotly_one_mesh_trace_per_mesh_node_with_its_vertices():
    scene = _scene()
    fig = xrdflow.scene.to_plotly(scene)
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    mesh_nodes = [n for n in scene.nodes if n.mesh is not None]
    assert [t.name for t in meshes] == [n.name for n in mesh_nodes]
    for trace, node in zip(meshes, mesh_nodes):
        assert len(trace.x) == len(node.mesh.vertices)
        assert len(trace.i) == len(node.mesh.faces)
        np.testing.assert_allclose(trace.z, node.mesh.vertices[:, 2])
        assert trace.hovertext == node.name
        assert trace.flatshading is False
        assert trace.opacity == pytest.approx(node.material.rgba[3])
        assert trace.legendgroup == node.group
    assert meshes[0].color == "rgb(255,0,0)"


def test_plotly_lines_are_nan_separated_and_labels_one_text_trace_per_group():
    scene = _scene()
    fig = xrdflow.scene.to_plotly(scene)
    (lines,) = [t for t in fig.data if t.type == "scatter3d" and t.mode == "lines"]
    assert lines.name == "lab axes"
    x = np.asarray(lines.x, dtype=float)
    assert len(x) == 3 * 3 and np.isnan(x[2::3]).all() and np.isfinite(x[0::3]).all()
    assert lines.line.width == 1.5
    (text,) = [t for t in fig.data if t.type == "scatter3d" and t.mode == "text"]
    assert list(text.text) == ["x (beam)", "z (up)"]
    assert not [t for t in xrdflow.scene.to_plotly(scene, show_labels=False).data
                if t.type == "scatter3d" and t.mode == "text"]


def test_plotly_camera_is_orthographic_with_true_aspect_and_legend_per_element():
    scene = _scene()
    fig = xrdflow.scene.to_plotly(scene, height=450)
    lay = fig.layout
    assert lay.scene.camera.projection.type == "orthographic"
    assert lay.scene.aspectmode == "data"
    assert [lay.scene.xaxis.title.text, lay.scene.yaxis.title.text,
            lay.scene.zaxis.title.text] == ["x (mm)", "y (mm)", "z (mm)"]
    assert lay.title.text == scene.title and lay.height == 450
    assert lay.uirevision and lay.scene.uirevision
    assert "not to scale" in lay.annotations[0].text
    shown = [t for t in fig.data if t.showlegend]
    names = [t.name for t in shown]
    for element, rgba in scene.legend:
        (entry,) = [t for t in shown if t.name == element and t.legendgroup == "__elements__"]
        r, g, b = (int(round(255 * c)) for c in rgba[:3])
        assert entry.marker.color == f"rgb({r},{g},{b})"
    for group in ("sample", "beam", "crystal", "goniometer", "detector", "axes", "labels"):
        assert group in names
    # the legend markers are at nowhere: they cannot stretch the axes
    assert all(t.x == (None,) for t in shown)
    json.loads(fig.to_json())  # serialisable (what streamlit sends)


# -------------------------------------------------------------------------------- matplotlib

def _read_png(path):
    import matplotlib.image as mimg

    return mimg.imread(path)[..., :3]


def _mask(img, rgb, tol=0.25):
    return (np.abs(img - np.asarray(rgb)) < tol).all(axis=-1)


def test_png_written_nonblank_red_box_makes_red_pixels(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    out = xrdflow.scene.save_image(_boxes(("red box", RED, (0, 0, 0))), tmp_path / "red.PNG",
                                   dpi=60, legend=False)
    assert out == tmp_path / "red.PNG" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["red.PNG"]  # no .partial, no .lock
    img = _read_png(out)
    # cropped to the drawing (title, notes, labels): at most size_in (7, 6) at 60 dpi plus
    # the 0.06 in pad on each side
    assert img.shape[0] <= 360 + 8 and img.shape[1] <= 420 + 8
    assert img.std() > 0.05
    red = (img[..., 0] > 0.3) & (img[..., 1] < 0.15) & (img[..., 2] < 0.15)
    assert red.sum() > 500
    rows, cols = np.nonzero(red)
    # the box alone fills the axes box: its image sits in the middle of the figure
    assert 0.3 < cols.mean() / img.shape[1] < 0.7 and 0.3 < rows.mean() / img.shape[0] < 0.7
    assert matplotlib.get_backend() == backend


def test_objects_appear_where_the_view_puts_them(tmp_path):
    # looking along +y (azim -90, elev 0): lab x runs right, z up
    scene = _boxes(("left", RED, (-6, 0, 0)), ("right", BLUE, (6, 0, 0)), ("top", GREEN, (0, 0, 6)))
    img = _read_png(xrdflow.scene.save_image(scene, tmp_path / "v.png", dpi=60, elev=0.0,
                                             azim=-90.0, legend=False))
    centre = {}
    for name, colour in (("left", RED.rgba), ("right", BLUE.rgba), ("top", GREEN.rgba)):
        # the face towards the viewer is lit, so it keeps its hue with some darkening
        hue = np.asarray(colour[:3])
        shade = img @ hue / max(hue @ hue, 1e-9)
        m = (np.linalg.norm(img - shade[..., None] * hue, axis=-1) < 0.08) & (shade > 0.3)
        assert m.sum() > 50, name
        rows, cols = np.nonzero(m)
        centre[name] = (cols.mean(), rows.mean())
    assert centre["left"][0] < centre["top"][0] < centre["right"][0]
    assert centre["top"][1] < centre["left"][1]
    assert centre["left"][1] == pytest.approx(centre["right"][1], abs=3)


def test_pdf_and_svg_and_bad_suffix(tmp_path):
    scene = _scene()
    assert xrdflow.scene.save_image(scene, tmp_path / "s.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in xrdflow.scene.save_image(scene, tmp_path / "s.svg").read_bytes()[:2000]
    bad = tmp_path / "scene.jpg"
    with pytest.raises(ValueError, match="scene.jpg"):
        xrdflow.scene.save_image(scene, bad)
    assert not bad.exists()


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    scene = _scene()
    target = tmp_path / "s.png"

    def broken(self, fname, **kw):
        Path(fname).write_bytes(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError):
        xrdflow.scene.save_image(scene, target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous figure")
    with pytest.raises(OSError):
        xrdflow.scene.save_image(scene, target)
    assert target.read_bytes() == b"previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


def test_mpl_axes_orthographic_equal_aspect_one_opaque_collection():
    from mpl_toolkits.mplot3d import proj3d
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    scene = _scene()
    ax = xrdflow.scene.draw(scene, elev=25.0, azim=-50.0)
    assert ax.name == "3d" and math.isinf(ax._focal_length)  # proj_type="ortho"
    ax.figure.canvas.draw()
    # two parallel box edges at different depths project to parallel, equally long lines
    proj = ax.get_proj()
    h = box_mesh((0, 0, 0), np.diag([1.0, 2.0, 1.5])).vertices  # index 4i + 2j + k
    edges = [(h[0], h[4]), (h[3], h[7])]  # the x edges at (y-, z-) and (y+, z+)
    d = []
    for a, b in edges:
        xs, ys, _ = proj3d.proj_transform(*np.array([a, b]).T, proj)
        d.append(np.array([xs[1] - xs[0], ys[1] - ys[0]]))
    assert abs(d[0][0] * d[1][1] - d[0][1] * d[1][0]) < 1e-9 * np.linalg.norm(d[0]) ** 2 + 1e-12
    np.testing.assert_allclose(d[0], d[1], rtol=1e-9, atol=1e-12)
    # equal scale: the box aspect follows the data ranges
    lo, hi = scene.bounds()
    aspect = np.asarray(ax.get_box_aspect())
    np.testing.assert_allclose(aspect / aspect.max(), (hi - lo + 0.06 * (hi - lo).max())
                               / (hi - lo + 0.06 * (hi - lo).max()).max(), rtol=1e-6)
    polys = [c for c in ax.collections if isinstance(c, Poly3DCollection)]
    assert len(polys) == 2  # every opaque triangle together, then the translucent ones
    opaque, glass = polys
    assert opaque.get_zorder() < glass.get_zorder()
    n_opaque = sum(len(n.mesh.faces) for n in scene.nodes
                   if n.mesh is not None and n.material.rgba[3] == 1)
    assert len(opaque.get_facecolor()) >= n_opaque
    assert np.allclose(glass.get_facecolor()[:, 3], GLASS.rgba[3])
    # Lambert shading: the faces of one colour do not all have the same brightness
    assert np.ptp(opaque.get_facecolor()[:, :3].sum(axis=1)) > 0.2
    assert len([c for c in ax.collections if isinstance(c, Line3DCollection)]) == 1
    assert {t.get_text() for t in ax.texts} >= {"x (beam)", "z (up)"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [e for e, _ in scene.legend]


def test_default_view_comes_from_the_scene_and_explicit_angles_win():
    scene = _scene(info={"view": {"elev": 12.0, "azim": -80.0}})
    ax = xrdflow.scene.draw(scene)
    assert (ax.elev, ax.azim) == (12.0, -80.0)
    ax = xrdflow.scene.draw(scene, elev=30.0, azim=-45.0)
    assert (ax.elev, ax.azim) == (30.0, -45.0)
    ax = xrdflow.scene.draw(_scene())  # no view in info: the old default
    assert (ax.elev, ax.azim) == (20.0, -60.0)
    eye = xrdflow.scene.to_plotly(scene).layout.scene.camera.eye
    el, az = math.radians(12.0), math.radians(-80.0)
    np.testing.assert_allclose([eye.x, eye.y, eye.z] / np.linalg.norm([eye.x, eye.y, eye.z]),
                               [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az),
                                math.sin(el)], atol=1e-12)
    eye = xrdflow.scene.to_plotly(scene, elev=90.0, azim=-90.0).layout.scene.camera.eye
    assert eye.z > 0 and abs(eye.x) < 1e-9


def test_draw_onto_given_axes_and_without_labels_or_legend():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(projection="3d")  # perspective: draw makes it orthographic
    assert xrdflow.scene.draw(_scene(), ax, show_labels=False, legend=False) is ax
    assert math.isinf(ax._focal_length)
    assert ax.get_legend() is None
    assert not {"x (beam)", "z (up)"} & {t.get_text() for t in ax.texts}


def test_png_of_30k_triangles_is_quick(tmp_path):
    scene = _big_scene()
    assert 25_000 < sum(len(n.mesh.faces) for n in scene.nodes) < 60_000
    xrdflow.scene.save_image(_boxes(("warm", RED, (0, 0, 0))), tmp_path / "warm.png", dpi=40)
    assert xrdflow.scene.save_image(scene, tmp_path / "big.png").stat().st_size > 0


# -------------------------------------------------------------------------------------- glTF

def _glb_json(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    clen, ctype = struct.unpack("<II", data[12:20])
    assert ctype == 0x4E4F534A  # "JSON"
    tree = json.loads(data[20:20 + clen])
    blen, btype = struct.unpack("<II", data[20 + clen:28 + clen])
    assert btype == 0x004E4942  # "BIN\0"
    return tree, data[28 + clen:28 + clen + blen]


def _positions(tree: dict, blob: bytes, node_name: str) -> np.ndarray:
    (node,) = [n for n in tree["nodes"] if n["name"] == node_name]
    acc = tree["accessors"][tree["meshes"][node["mesh"]]["primitives"][0]["attributes"]["POSITION"]]
    view = tree["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype="<f4", count=3 * acc["count"], offset=start).reshape(-1, 3)


def test_lab_to_gltf_is_a_rotation_to_metres_y_up():
    from xrdflow.scene.gltf import LAB_TO_GLTF

    r = LAB_TO_GLTF * 1e3
    np.testing.assert_allclose(r @ r.T, np.eye(3))
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(LAB_TO_GLTF @ [0, 0, 1], [0, 1e-3, 0])  # up is +Y
    np.testing.assert_allclose(LAB_TO_GLTF @ [1, 0, 0], [1e-3, 0, 0])  # beam is +X
    np.testing.assert_allclose(LAB_TO_GLTF @ [0, 1, 0], [0, 0, -1e-3])


def test_glb_nodes_materials_axes_and_extras():
    pytest.importorskip("trimesh")
    tri = Node("tri", "sample", RED, mesh=Mesh([[0, 0, 1], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]))
    scene = _scene()
    scene = Scene((tri,) + scene.nodes, scene.title, scene.info, scene.legend, scene.notes)
    tree, blob = _glb_json(xrdflow.scene.gltf_bytes(scene))
    assert [n["name"] for n in tree["nodes"]] == [n.name for n in scene.nodes]
    roots = tree["scenes"][tree["scene"]]["nodes"]
    assert sorted(roots) == list(range(len(scene.nodes)))
    mats = {m["name"]: m for m in tree["materials"]}
    assert set(mats) == {"sample red", "beam blue", "ring green", "detector glass", "ink"}
    for material in (RED, BLUE, GREEN, GLASS, BLACK):
        m = mats[material.name]
        assert m["pbrMetallicRoughness"]["baseColorFactor"] == pytest.approx(material.rgba)
        assert m["alphaMode"] == ("BLEND" if material.rgba[3] < 1 else "OPAQUE")
        assert m["doubleSided"] is True
    by_name = {n["name"]: n for n in tree["nodes"]}
    for name, material in (("sample", RED), ("detector", GLASS), ("lab axes", BLACK)):
        prim = tree["meshes"][by_name[name]["mesh"]]["primitives"][0]
        assert tree["materials"][prim["material"]]["name"] == material.name
    assert tree["meshes"][by_name["lab axes"]["mesh"]]["primitives"][0]["mode"] == 1  # LINES
    assert by_name["lab axes"]["extras"]["line_width_px"] == 1.5
    # the axis map, in the file's own float32 positions: lab (0,0,1) mm -> glTF (0, 1e-3, 0) m
    p = _positions(tree, blob, "tri")
    np.testing.assert_allclose(np.sort(p, axis=0),
                               np.sort([[0, 1e-3, 0], [1e-3, 0, 0], [0, 0, -1e-3]], axis=0),
                               atol=1e-9)
    # labels: empty nodes at the label position (metres, +Y up) with the text
    lab = by_name["label z"]
    assert "mesh" not in lab and lab["extras"]["text"] == "z (up)"
    np.testing.assert_allclose(np.array(lab["matrix"]).reshape(4, 4).T[:3, 3], [0, 6e-3, 0])
    extras = tree["scenes"][tree["scene"]]["extras"]
    assert extras["title"] == scene.title and tree["asset"]["extras"]["title"] == scene.title
    assert extras["info"] == {"energy_kev": 17.0, "hkl": [1, 1, 1], "nothing": None}
    assert extras["notes"] == list(scene.notes)
    assert [e["element"] for e in extras["legend"]] == [e for e, _ in scene.legend]


def test_gltf_json_and_trimesh_reads_back_the_bounds(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from xrdflow.scene.gltf import LAB_TO_GLTF

    scene = _scene()
    out = xrdflow.scene.write_gltf(scene, tmp_path / "scene.gltf")
    tree = json.loads(out.read_text())
    assert tree["asset"]["version"] == "2.0"
    assert len(tree["buffers"]) == 1
    assert tree["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    assert [n["name"] for n in tree["nodes"]] == [n.name for n in scene.nodes]
    glb = xrdflow.scene.write_gltf(scene, tmp_path / "scene.glb")
    assert glb.read_bytes()[:4] == b"glTF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.glb", "scene.gltf"]
    drawn = [n for n in scene.nodes if n.label is None]
    pts = np.concatenate([n.points for n in drawn]) @ LAB_TO_GLTF.T
    for path in (out, glb):
        loaded = trimesh.load(path)
        assert set(loaded.graph.nodes_geometry) == {n.name for n in drawn}
        np.testing.assert_allclose(loaded.bounds, [pts.min(axis=0), pts.max(axis=0)], atol=1e-6)
        sample = loaded.geometry["sample"]
        assert len(sample.faces) == 12
        np.testing.assert_allclose(sample.visual.material.baseColorFactor[:3], [255, 0, 0])


def test_gltf_bad_suffix_failed_write_duplicate_names(tmp_path, monkeypatch):
    pytest.importorskip("trimesh")
    scene = _scene()
    with pytest.raises(ValueError, match="scene.obj"):
        xrdflow.scene.write_gltf(scene, tmp_path / "scene.obj")

    def broken(self, data):
        with open(self, "wb") as fh:
            fh.write(data[:10])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", broken)
        with pytest.raises(OSError):
            xrdflow.scene.write_gltf(scene, tmp_path / "scene.glb")
    assert list(tmp_path.iterdir()) == []
    twice = Scene((scene.nodes[0], scene.nodes[0]), "twice")
    tree, _ = _glb_json(xrdflow.scene.gltf_bytes(twice))
    assert [n["name"] for n in tree["nodes"]] == ["sample", "sample #2"]


def test_gltf_without_trimesh_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "trimesh", None)  # import trimesh -> ImportError
    with pytest.raises(ImportError, match="pip install trimesh"):
        xrdflow.scene.gltf_bytes(_scene())


def test_gltf_of_30k_triangles_is_quick():
    trimesh = pytest.importorskip("trimesh")
    scene = _big_scene()
    data = xrdflow.scene.gltf_bytes(scene)
    loaded = trimesh.load(io.BytesIO(data), file_type="glb")
    assert sum(len(g.faces) for g in loaded.geometry.values()) == sum(
        len(n.mesh.faces) for n in scene.nodes)


# ------------------------------------------------------------------------------ integration

def test_build_scene_renders_in_all_three(tmp_path):
    from xrdflow.scene.build import build_scene

    scene = build_scene("Si", energy_kev=17.0, reflection="1 1 1",
                                      mount={"vertical": "(111)"}, goniometer="dfxrm")
    assert isinstance(scene, Scene) and scene.nodes
    fig = xrdflow.scene.to_plotly(scene)
    assert fig.layout.scene.camera.projection.type == "orthographic"
    assert ({t.name for t in fig.data if t.type == "mesh3d"}
            == {n.name for n in scene.nodes if n.mesh is not None})
    img = _read_png(xrdflow.scene.save_image(scene, tmp_path / "plan.png", dpi=60))
    assert img.std() > 0.02
    if sys.modules.get("trimesh") is not None or _has("trimesh"):
        tree, _ = _glb_json(xrdflow.scene.gltf_bytes(scene))
        assert len(tree["nodes"]) == len(scene.nodes)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_plotly_hiding_a_group_hides_its_labels():
    from xrdflow.scene.build import build_scene

    scene = build_scene("Si", energy_kev=17.0, reflection="1 1 1", mount={"vertical": "(111)"},
                        goniometer="dfxrm")
    fig = xrdflow.scene.to_plotly(scene)
    text = [t for t in fig.data if t.type == "scatter3d" and t.mode == "text"]
    by_name = {n.name: n for n in scene.nodes}
    groups = set()
    for t in text:  # every label sits in its own node's group (the legend toggle hides both)
        assert {by_name[h].group for h in t.hovertext} == {t.legendgroup}
        groups.add(t.legendgroup)
    assert groups == {n.group for n in scene.nodes if n.label is not None}
    assert sum(len(t.text) for t in text) == sum(n.label is not None for n in scene.nodes)


def test_one_view_formula_for_every_renderer():
    from xrdflow.scene import mpl, plotly
    from xrdflow.scene.model import view_basis

    for elev, azim in ((12.0, -80.0), (-48.0, -75.0), (70.0, -90.0)):
        eye = view_basis(elev, azim)[0]
        cam = plotly._eye(elev, azim, distance=2.0)
        np.testing.assert_allclose([cam["x"], cam["y"], cam["z"]], 2.0 * eye, atol=1e-12)
        np.testing.assert_allclose(mpl._view_vectors(elev, azim)[0], eye, atol=1e-12)
