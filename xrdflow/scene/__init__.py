"""The planner's 3D scene: one plain data model, several renderers.

:func:`build_scene` turns one planned experiment (phase, energy, reflection, mount,
goniometer solution, sample and beam size, objective lens) into a :class:`Scene` of named
nodes in the lab frame (mm). The renderers draw that same scene:

- :func:`to_plotly`: an interactive plotly figure with an orthographic camera (the app);
- :func:`draw` / :func:`save_image`: matplotlib, orthographic, PNG/PDF/SVG (the report);
- :func:`write_gltf`: glTF 2.0 with named nodes and materials (Blender, three.js).

Names are imported lazily, so ``import xrdflow.scene`` does not import plotly or trimesh.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Scene": "model", "Node": "model", "Mesh": "model", "Lines": "model", "Label": "model",
    "Material": "model",
    "build_scene": "build", "scene_from_plan": "build",
    "crystal_nodes": "crystal",
    "to_plotly": "plotly",
    "draw": "mpl", "save_image": "mpl",
    "write_gltf": "gltf", "gltf_bytes": "gltf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'xrdflow.scene' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"xrdflow.scene.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
