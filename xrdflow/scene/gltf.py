"""glTF 2.0 export of a :class:`~xrdflow.scene.model.Scene` (Blender, three.js, any viewer).

Written with trimesh (optional: ``pip install trimesh``, or the ``viz`` extra
``pip install 'xrdflow[viz]'``). glTF's conventions, not the lab's, are used in the file:

- lengths in metres (the scene's mm times 1e-3);
- each mesh carries vertex normals, split at edges sharper than ``SMOOTH_ANGLE_DEG`` (a
  sphere shades round, a box flat), so the vertex count can exceed the scene mesh's;
- +Y up: lab x -> glTF +X, lab z (up) -> glTF +Y, lab y -> glTF -Z. The map is a proper
  rotation (determinant +1), so handedness and the triangles' winding are kept. Blender's
  importer turns +Y up back into its +Z up, so in Blender the coordinates are the lab
  frame's, in metres.

Every scene node becomes one glTF node of the same name (made unique with a ``" #2"``
suffix if the scene repeats a name): a mesh node holds a triangle mesh, a :class:`Lines`
node a ``LINES`` primitive (Blender imports it as loose edges, three.js as line segments;
the pixel width is kept in the node's ``extras``), a :class:`Label` node is an empty node
at the label's position with its text in ``extras``. Each :class:`Material` becomes one
named PBR material (``baseColorFactor`` = rgba, ``alphaMode`` ``"BLEND"`` when alpha < 1,
double-sided). The scene's title, info, legend and notes are in the ``extras`` of the
glTF scene (and the title in ``asset.extras``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .model import Material, Scene

__all__ = ["gltf_bytes", "write_gltf", "LAB_TO_GLTF", "GLTF_SUFFIXES"]

#: lab (x, y, z; z up; mm) -> glTF (X, Y, Z; Y up; m): ``p_gltf = LAB_TO_GLTF @ p_lab``
LAB_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) * 1e-3

#: Faces meeting at a smaller angle than this (degrees) share smooth vertex normals; at a
#: sharper edge (a box's) the vertices are split so the faces shade flat.
SMOOTH_ANGLE_DEG = 40.0

#: Suffixes :func:`write_gltf` writes: binary glTF, or JSON with the buffer embedded.
GLTF_SUFFIXES = (".glb", ".gltf")


def _trimesh():
    try:
        import trimesh
    except ImportError as exc:
        raise ImportError("xrdflow.scene.gltf needs trimesh for the glTF export: "
                          "pip install trimesh (or pip install 'xrdflow[viz]')") from exc
    return trimesh


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays to Python numbers and lists,
    tuples and sets to lists, non-finite floats (not allowed in JSON) to None, other
    objects to their ``str``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, complex):
        return [_jsonable(value.real), _jsonable(value.imag)]
    return str(value)


def _unique_names(scene: Scene) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for node in scene.nodes:
        name = node.name
        if name in seen:
            seen[name] += 1
            name = f"{node.name} #{seen[node.name]}"
            while name in seen:
                seen[node.name] += 1
                name = f"{node.name} #{seen[node.name]}"
        seen.setdefault(name, 1)
        out.append(name)
    return out


def _material_json(material: Material) -> dict:
    rgba = [float(min(1.0, max(0.0, c))) for c in material.rgba]
    out = {"name": material.name,
           "pbrMetallicRoughness": {"baseColorFactor": rgba, "metallicFactor": 0.0,
                                    "roughnessFactor": 0.7},
           "doubleSided": True}
    out["alphaMode"] = "BLEND" if rgba[3] < 1.0 else "OPAQUE"
    return out


def _to_gltf(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=float) @ LAB_TO_GLTF.T


def _build(scene: Scene):
    """(trimesh.Scene, tree post-processor) for ``scene``."""
    trimesh = _trimesh()
    out = trimesh.Scene()
    names = _unique_names(scene)
    base = out.graph.base_frame
    geometry_material: dict[str, Material] = {}  # trimesh geometry name -> our material
    node_extras: dict[str, dict] = {}
    for name, node in zip(names, scene.nodes):
        extras = {"group": node.group, "material": node.material.name}
        if node.info:
            extras["info"] = _jsonable(node.info)
        if node.mesh is not None:
            geom = trimesh.Trimesh(vertices=_to_gltf(node.mesh.vertices),
                                   faces=node.mesh.faces, process=False, validate=False)
            if len(geom.faces):
                # split the vertices at edges sharper than SMOOTH_ANGLE_DEG, so the exported
                # vertex normals shade a sphere round and a box flat
                geom = trimesh.graph.smooth_shade(geom, angle=math.radians(SMOOTH_ANGLE_DEG),
                                                  facet_minarea=None)
                geom.metadata.clear()  # smooth_shade's bookkeeping, not for the file
            out.add_geometry(geom, node_name=name, geom_name=name)
            geometry_material[name] = node.material
        elif node.lines is not None:
            extras["line_width_px"] = float(node.lines.width)
            pts = _to_gltf(node.lines.points.reshape(-1, 3)).reshape(-1, 2, 3)
            if len(pts):
                path = trimesh.load_path(pts)
                out.add_geometry(path, node_name=name, geom_name=name)
                geometry_material[name] = node.material
            else:  # nothing to draw: keep the named node, empty
                out.graph.update(frame_from=base, frame_to=name)
        else:
            extras.update(text=node.label.text, size_pt=float(node.label.size),
                          rgba=[float(c) for c in node.material.rgba])
            matrix = np.eye(4)
            matrix[:3, 3] = _to_gltf(node.label.position)
            out.graph.update(frame_from=base, frame_to=name, matrix=matrix)
        node_extras[name] = _jsonable(extras)

    scene_extras = _jsonable({"title": scene.title, "info": scene.info,
                              "legend": [{"element": e, "rgba": c} for e, c in scene.legend],
                              "notes": scene.notes, "units": "m", "up": "+Y",
                              "lab_to_gltf": LAB_TO_GLTF.tolist()})

    def postprocess(tree: dict) -> None:
        """Set our materials (exact float colours, names) on every primitive, drop any
        unused trimesh default material, and add the extras."""
        materials: list[dict] = []
        index: dict[Material, int] = {}
        for mesh in tree.get("meshes", []):
            material = geometry_material.get(mesh.get("name"))
            if material is None:
                continue
            if material not in index:
                index[material] = len(materials)
                materials.append(_material_json(material))
            for prim in mesh.get("primitives", []):
                prim["material"] = index[material]
        if materials:
            tree["materials"] = materials
        else:
            tree.pop("materials", None)
        # trimesh's texture-free materials leave no images or textures to clean up
        for node in tree.get("nodes", []):
            if node.get("name") in node_extras:
                node["extras"] = {**node.get("extras", {}), **node_extras[node["name"]]}
        tree["scenes"][tree.get("scene", 0)]["extras"] = scene_extras
        tree["scenes"][tree.get("scene", 0)]["name"] = scene.title
        tree["asset"]["extras"] = {"title": scene.title, "generator": "xrdflow.scene.gltf"}

    return out, postprocess


def gltf_bytes(scene: Scene, *, binary: bool = True) -> bytes:
    """``scene`` as glTF 2.0: binary ``.glb`` bytes, or ``.gltf`` JSON (UTF-8) with the
    geometry buffer embedded as a base64 data URI.

    Parameters
    ----------
    scene : Scene
        The scene, lab frame in mm (written in metres, +Y up: see the module docstring).
    binary : bool
        GLB (True) or self-contained glTF JSON (False).

    Returns
    -------
    bytes

    Raises
    ------
    ImportError
        If trimesh is not installed (``pip install trimesh``).

    Examples
    --------
    >>> import json
    >>> from xrdflow.scene.model import Scene, Node, Material, box_mesh
    >>> box = Node("box", "sample", Material("red", (1.0, 0.0, 0.0, 1.0)),
    ...            mesh=box_mesh((0, 0, 0), np.eye(3)))
    >>> tree = json.loads(gltf_bytes(Scene((box,), "one box"), binary=False))
    >>> [n["name"] for n in tree["nodes"]], tree["materials"][0]["name"]
    (['box'], 'red')
    """
    out, postprocess = _build(scene)
    if binary:
        return bytes(out.export(file_type="glb", include_normals=True,
                                      tree_postprocessor=postprocess))
    files = _trimesh().exchange.gltf.export_gltf(out, embed_buffers=True, merge_buffers=True,
                                                 include_normals=True,
                                                 tree_postprocessor=postprocess)
    data = files["model.gltf"]
    return data if isinstance(data, bytes) else str(data).encode("utf-8")


def write_gltf(scene: Scene, path: str | os.PathLike) -> Path:
    """Write ``scene`` as ``.glb`` (binary) or ``.gltf`` (JSON, buffer embedded), by suffix.

    The file is written under a temporary name and renamed only when complete
    (:func:`xrdflow.nexus.atomic_output`), so a failed export leaves no file.

    Parameters
    ----------
    scene : Scene
        The scene (mm; written in metres, +Y up).
    path : str or os.PathLike
        Output file ending in ``.glb`` or ``.gltf`` (case-insensitive); its folder must exist.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the suffix is neither ``.glb`` nor ``.gltf``.
    ImportError
        If trimesh is not installed.
    """
    from ..nexus import atomic_output

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in GLTF_SUFFIXES:
        raise ValueError(f"path: {str(path)!r} must end in .glb (binary glTF) or .gltf "
                         f"(JSON glTF), got {path.suffix or 'no suffix'!r}")
    data = gltf_bytes(scene, binary=suffix == ".glb")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path
