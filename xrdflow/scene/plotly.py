"""Interactive plotly view of a :class:`~xrdflow.scene.model.Scene` (the planner app).

One ``Mesh3d`` trace per mesh node, one ``Scatter3d`` line trace per :class:`Lines` node
and one text trace per node group's labels, in the lab frame (mm: beam along +x, z up). The camera
is orthographic and the aspect ratio is the data's, so angles on screen are true angles.

The legend holds two kinds of entries: the scene's element key (``scene.legend``: one
coloured square per element drawn, for reading colours; clicking one hides nothing) and,
under "show / hide", one entry per node group (``"beam"``, ``"crystal"``, ...; an open
circle in the colour of the group's first node), whose click shows or hides every node of
that group, its labels included (each group's labels are one text trace in the group's
``legendgroup``).
"""

from __future__ import annotations


import numpy as np

from .model import Scene, view_basis

__all__ = ["to_plotly"]

#: Layout and scene ``uirevision``: a constant, so a Streamlit rerun that replaces the
#: figure keeps the user's camera, zoom and legend toggles.
UIREVISION = "xrdflow-scene"

# Mesh3d lighting: enough diffuse and specular against the ambient term that a sphere's
# shading reads as round and a cylinder's as curved.
_LIGHTING = dict(ambient=0.45, diffuse=0.75, specular=0.25, roughness=0.5, fresnel=0.15)
_LIGHT_POSITION = dict(x=4.0e4, y=-6.0e4, z=1.0e5)

_ELEMENTS_GROUP = "__elements__"


def _rgb(rgba) -> str:
    r, g, b = (int(round(255 * min(1.0, max(0.0, float(c))))) for c in rgba[:3])
    return f"rgb({r},{g},{b})"


def _alpha(rgba) -> float:
    return float(min(1.0, max(0.0, float(rgba[3]) if len(rgba) > 3 else 1.0)))


def _eye(elev: float, azim: float, distance: float = 1.8) -> dict:
    """plotly camera ``eye`` (in units of the scene box) for a matplotlib-style view."""
    eye = distance * view_basis(elev, azim)[0]
    return dict(x=float(eye[0]), y=float(eye[1]), z=float(eye[2]))


def _segments_xyz(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 2, 3) segments -> x, y, z arrays ``a0 b0 nan a1 b1 nan ...`` for one line trace."""
    n = len(points)
    xyz = np.full((n, 3, 3), np.nan)
    xyz[:, :2, :] = points
    xyz = xyz.reshape(-1, 3)
    return xyz[:, 0], xyz[:, 1], xyz[:, 2]


def to_plotly(scene: Scene, *, height: int = 600, show_labels: bool = True,
              elev: float | None = None, azim: float | None = None):
    """A plotly figure of ``scene``: orthographic camera, true aspect ratio, lab frame in mm.

    Parameters
    ----------
    scene : Scene
        The scene; node coordinates in mm (beam along +x, z up).
    height : int
        Figure height in pixels (the width follows the container).
    show_labels : bool
        Draw the scene's text labels (one ``Scatter3d(mode="text")`` trace per group).
    elev, azim : float, optional
        The initial view (degrees, matplotlib's convention; the camera ``eye``); default
        the scene's ``info["view"]`` (normal to the scattering plane), else (20, -60).

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: one ``Mesh3d`` per mesh node and one ``Scatter3d`` (lines) per line node,
        each named after its node (the hover text is the node name) and put in the
        ``legendgroup`` of the node's group; then the label traces (one per group, named
        ``"<group> labels"``, in the group's ``legendgroup``); then invisible marker
        traces that make the legend: one per ``scene.legend`` element, one per group.
        ``layout.uirevision`` is constant, so the user's rotation survives updates.

    Examples
    --------
    >>> from xrdflow.scene.model import Scene, Node, Material, box_mesh
    >>> red = Material("red", (1.0, 0.0, 0.0, 1.0))
    >>> box = Node("box", "sample", red, mesh=box_mesh((0, 0, 0), 0.5 * np.eye(3)))
    >>> fig = to_plotly(Scene((box,), "one box", legend=(("sample", red.rgba),)))
    >>> fig.layout.scene.camera.projection.type, fig.layout.scene.aspectmode
    ('orthographic', 'data')
    >>> [t.type for t in fig.data]
    ['mesh3d', 'scatter3d', 'scatter3d']
    """
    import plotly.graph_objects as go

    from .mpl import default_view

    elev, azim = default_view(scene, elev, azim)

    traces = []
    groups: dict[str, tuple] = {}  # group -> colour of its first node, in scene order

    def note_group(group: str, rgba) -> None:
        groups.setdefault(group, rgba)

    labels = []
    for node in scene.nodes:
        rgba = node.material.rgba
        common = dict(name=node.name, legendgroup=node.group, showlegend=False,
                      hovertext=node.name, hoverinfo="text")
        if node.mesh is not None:
            v, f = node.mesh.vertices, node.mesh.faces
            traces.append(go.Mesh3d(
                x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
                color=_rgb(rgba), opacity=_alpha(rgba), flatshading=False,
                lighting=_LIGHTING, lightposition=_LIGHT_POSITION, **common))
            note_group(node.group, rgba)
        elif node.lines is not None:
            x, y, z = _segments_xyz(node.lines.points)
            traces.append(go.Scatter3d(
                x=x, y=y, z=z, mode="lines", connectgaps=False, opacity=_alpha(rgba),
                line=dict(color=_rgb(rgba), width=float(node.lines.width)), **common))
            note_group(node.group, rgba)
        elif show_labels:
            labels.append(node)

    by_group: dict[str, list] = {}  # one text trace per group, in the group's legendgroup
    for n in labels:
        by_group.setdefault(n.group, []).append(n)
    for group, members in by_group.items():
        pos = np.array([n.label.position for n in members])
        traces.append(go.Scatter3d(
            x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="text",
            text=[n.label.text for n in members], name=f"{group} labels", legendgroup=group,
            showlegend=False, hovertext=[n.name for n in members], hoverinfo="text",
            textposition="middle center",
            textfont=dict(size=[round(4.0 / 3.0 * float(n.label.size), 2) for n in members],
                          color=[_rgb(n.material.rgba) for n in members])))
        note_group(group, members[0].material.rgba)

    # legend: invisible one-point-at-nowhere markers, which never touch the axis ranges
    nowhere = dict(x=[None], y=[None], z=[None], mode="markers", hoverinfo="skip")
    for i, (element, rgba) in enumerate(scene.legend):
        traces.append(go.Scatter3d(
            name=str(element), legendgroup=_ELEMENTS_GROUP, showlegend=True, legendrank=1 + i,
            legendgrouptitle_text="elements" if i == 0 else None,
            marker=dict(size=8, symbol="square", color=_rgb(rgba), opacity=_alpha(rgba)),
            **nowhere))
    for i, (group, rgba) in enumerate(groups.items()):
        traces.append(go.Scatter3d(
            name=group, legendgroup=group, showlegend=True, legendrank=1000 + i,
            legendgrouptitle_text="show / hide" if i == 0 else None,
            marker=dict(size=7, symbol="circle-open", color=_rgb(rgba)), **nowhere))

    axis = dict(showbackground=False, gridcolor="rgb(225,225,225)", zeroline=False)
    annotations = []
    if scene.notes:
        annotations.append(dict(
            text="<br>".join(str(n) for n in scene.notes), xref="paper", yref="paper",
            x=0.0, y=0.0, xanchor="left", yanchor="bottom", showarrow=False, align="left",
            font=dict(size=10, color="rgb(90,90,90)")))

    fig = go.Figure(data=traces)
    fig.update_layout(
        title=dict(text=scene.title, font=dict(size=14)),
        height=int(height),
        margin=dict(l=0, r=0, t=40 if scene.title else 10, b=0),
        uirevision=UIREVISION,
        legend=dict(groupclick="togglegroup", itemsizing="constant", font=dict(size=11)),
        annotations=annotations,
        scene=dict(
            aspectmode="data",
            uirevision=UIREVISION,
            xaxis=dict(title=dict(text="x (mm)"), **axis),
            yaxis=dict(title=dict(text="y (mm)"), **axis),
            zaxis=dict(title=dict(text="z (mm)"), **axis),
            camera=dict(projection=dict(type="orthographic"), up=dict(x=0, y=0, z=1),
                        center=dict(x=0, y=0, z=0), eye=_eye(elev, azim)),
        ),
    )
    return fig
