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

from .._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
