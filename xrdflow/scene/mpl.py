"""Static matplotlib view of a :class:`~xrdflow.scene.model.Scene` (reports: PNG, PDF, SVG).

Orthographic 3D axes with equal scale on x, y and z (lab frame, mm: beam along +x, z up),
so angles in the picture are the angles of the experiment seen from the chosen direction.
All opaque triangles go into one ``Poly3DCollection`` (one painter's sort for all of them,
so objects hide each other correctly), the translucent ones into a second collection drawn
after them, each face shaded by a simple Lambert term so spheres and cylinders look round.

matplotlib object API only (``matplotlib.figure.Figure`` and the Agg canvas): no pyplot,
no change of the user's backend, safe in headless workers and threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .model import Scene, view_basis

__all__ = ["draw", "save_image", "IMAGE_SUFFIXES"]

#: Suffixes :func:`save_image` writes (matplotlib format names).
IMAGE_SUFFIXES = (".png", ".pdf", ".svg")

_AMBIENT = 0.38  # fraction of the material colour a face turned away from the light keeps
_DIFFUSE = 0.62  # Lambert term's weight; _AMBIENT + _DIFFUSE = 1 keeps a lit face's colour

#: In PDF/SVG, a mesh collection of more faces than this is embedded as an image (at the
#: save dpi) instead of as vector triangles, which keeps big scenes' files small and fast.
RASTERIZE_FACES = 20000

# zorders with computed_zorder off: opaque meshes, then lines, translucent meshes, labels
_Z_OPAQUE, _Z_LINES, _Z_TRANSLUCENT, _Z_LABELS = 1, 2, 3, 4


def _view_vectors(elev: float, azim: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector towards the viewer and the light direction (from up-left-front)."""
    eye, right, up = view_basis(elev, azim)
    light = eye + 0.6 * up - 0.45 * right
    return eye, light / np.linalg.norm(light)


def _shaded_faces(nodes, light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (m, 3, 3) mm and their shaded RGBA colours (m, 4) for mesh ``nodes``."""
    tris, colours = [], []
    for node in nodes:
        t = node.mesh.vertices[node.mesh.faces]  # (m, 3, 3)
        if not len(t):
            continue
        normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        length = np.linalg.norm(normal, axis=1)
        # two-sided Lambert (|n.l|), so a mesh's winding does not matter; degenerate
        # triangles (zero normal) get the ambient term only
        lambert = np.abs(normal @ light) / np.where(length > 0, length, np.inf)
        shade = _AMBIENT + _DIFFUSE * lambert
        rgba = np.asarray(node.material.rgba, dtype=float)
        c = np.empty((len(t), 4))
        c[:, :3] = np.clip(rgba[:3] * shade[:, None], 0.0, 1.0)
        c[:, 3] = rgba[3]
        tris.append(t)
        colours.append(c)
    if not tris:
        return np.zeros((0, 3, 3)), np.zeros((0, 4))
    return np.concatenate(tris), np.concatenate(colours)


def _split_long(tris: np.ndarray, colours: np.ndarray, max_edge: float,
                max_rounds: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Bisect triangles longer than ``max_edge`` (mm) at their longest edge's midpoint.

    The painter's sort orders faces by their mean depth, which is wrong for a long thin
    triangle (a cylinder's shaft) beside a small one: it can be drawn over a box it enters.
    Faces no longer than ``max_edge`` sort correctly against each other. Each round halves
    the longest edge of every face still too long; ``max_rounds`` bounds the growth.
    """
    done_t, done_c = [], []
    for _ in range(max_rounds):
        edges = np.stack([tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 1],
                          tris[:, 0] - tris[:, 2]], axis=1)
        length = np.linalg.norm(edges, axis=2)  # (m, 3): edge k runs from vertex k to k+1
        long = length.max(axis=1) > max_edge
        done_t.append(tris[~long])
        done_c.append(colours[~long])
        if not long.any():
            tris, colours = tris[:0], colours[:0]
            break
        t, c = tris[long], colours[long]
        k = length[long].argmax(axis=1)
        rows = np.arange(len(t))
        a, b, o = t[rows, k], t[rows, (k + 1) % 3], t[rows, (k + 2) % 3]
        m = 0.5 * (a + b)
        tris = np.concatenate([np.stack([a, m, o], axis=1), np.stack([m, b, o], axis=1)])
        colours = np.concatenate([c, c])
    done_t.append(tris)
    done_c.append(colours)
    return np.concatenate(done_t), np.concatenate(done_c)


def default_view(scene: Scene, elev: float | None = None,
                 azim: float | None = None) -> tuple[float, float]:
    """(elev, azim): the arguments where given, else the scene's ``info["view"]`` (the
    builder's view normal to the scattering plane), else (20, -60)."""
    view = scene.info.get("view") if isinstance(scene.info, dict) else None
    view = view if isinstance(view, dict) else {}
    return (float(view.get("elev", 20.0)) if elev is None else float(elev),
            float(view.get("azim", -60.0)) if azim is None else float(azim))


def _fit(ax, lo, hi, points) -> tuple[float, float, float]:
    """Equal scale on x, y, z, zoomed so the drawing (``points``, mm) fills the (square) 3D
    axes box; returns the drawing's top, bottom and right edges in axes fractions."""
    from mpl_toolkits.mplot3d import proj3d

    ax.set_box_aspect(hi - lo)  # equal scale: box sides proportional to the ranges
    xs, ys, _ = proj3d.proj_transform(*np.asarray(points, float).T, ax.get_proj())
    view = ax.viewLim  # projected coordinates: the box centre projects to (0, 0)
    half_w, half_h = 0.5 * view.width, 0.5 * view.height
    extent = max(float(np.max(np.abs(xs))) / half_w, float(np.max(np.abs(ys))) / half_h)
    ax.set_box_aspect(hi - lo, zoom=0.96 / max(extent, 1e-9))
    xs, ys, _ = proj3d.proj_transform(*np.asarray(points, float).T, ax.get_proj())
    return ((float(ys.max()) - view.y0) / view.height, (float(ys.min()) - view.y0) / view.height,
            (float(xs.max()) - view.x0) / view.width)


def draw(scene: Scene, ax=None, *, elev: float | None = None, azim: float | None = None,
         show_labels: bool = True, legend: bool = True, axes: bool = False,
         title: bool = True, notes: bool = True):
    """Draw ``scene`` on orthographic 3D axes with equal scale on x, y, z.

    Parameters
    ----------
    scene : Scene
        The scene; node coordinates in mm (beam along +x, z up).
    ax : mpl_toolkits.mplot3d.axes3d.Axes3D, optional
        Axes to draw on (set to the orthographic projection here). Default: a new
        ``matplotlib.figure.Figure`` (Agg canvas, no pyplot) with one 3D axes.
    elev, azim : float, optional
        View direction in degrees, as :meth:`Axes3D.view_init`; default the scene's
        ``info["view"]`` (:func:`xrdflow.scene.build_scene` looks normal to the scattering
        plane, where the orthographic picture shows the angles true), else (20, -60). The
        face shading is lit from this view.
    show_labels : bool
        Draw the scene's text labels.
    legend : bool
        Draw the element key (``scene.legend``) as coloured patches.
    axes : bool
        Draw the 3D axes (panes off, light ticks in mm); default off: a clean white
        picture whose lengths the scene's own lab triad ("arrows 1 mm") gives.
    title, notes : bool
        Write the scene's title above the drawing and its notes (what is not to scale)
        below it; a page that prints them itself (the report) turns them off.

    Returns
    -------
    mpl_toolkits.mplot3d.axes3d.Axes3D
        The axes; ``ax.figure`` is the figure.

    Notes
    -----
    Draw order: every opaque triangle in one depth-sorted ``Poly3DCollection`` (faces
    longer than 1/40 of the scene are bisected first so the painter's sort holds), then
    the lines (one ``Line3DCollection`` per node, widths in px * 0.75 = pt), then the
    translucent triangles, then the labels. matplotlib cannot depth-sort lines against
    faces, so a line is drawn over an opaque mesh even where the mesh is in front of it.

    Examples
    --------
    >>> from xrdflow.scene.model import Scene, Node, Material, sphere_mesh
    >>> ball = Node("ball", "sample", Material("grey", (0.6, 0.6, 0.6, 1.0)),
    ...             mesh=sphere_mesh((0, 0, 0), 1.0))
    >>> ax = draw(Scene((ball,), "a ball"))
    >>> ax.name, ax.get_title()
    ('3d', 'a ball')
    """
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    elev, azim = default_view(scene, elev, azim)
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.0, 6.0))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(projection="3d", proj_type="ortho")
    else:
        ax.set_proj_type("ortho")
    ax.computed_zorder = False  # the zorders below decide, not the collections' mean depth
    ax.view_init(elev=elev, azim=azim)
    _, light = _view_vectors(elev, azim)

    lo = hi = None
    if scene.nodes:
        lo, hi = scene.bounds()
        pad = 0.03 * max(float((hi - lo).max()), 1e-9)
        lo, hi = lo - pad, hi + pad
    max_edge = float((hi - lo).max()) / 40.0 if lo is not None else np.inf

    meshes = [n for n in scene.nodes if n.mesh is not None]
    opaque = [n for n in meshes if n.material.rgba[3] >= 1.0]
    translucent = [n for n in meshes if n.material.rgba[3] < 1.0]
    for nodes, z in ((opaque, _Z_OPAQUE), (translucent, _Z_TRANSLUCENT)):
        tris, colours = _shaded_faces(nodes, light)
        if len(tris):
            tris, colours = _split_long(tris, colours, max_edge)
            # edges in the face colour hide the antialiasing seams between triangles
            poly = Poly3DCollection(tris, facecolors=colours, edgecolors=colours,
                                    linewidths=0.25 if z == _Z_OPAQUE else 0.0,
                                    zorder=z, zsort="average")
            poly.set_rasterized(len(tris) > RASTERIZE_FACES)
            ax.add_collection3d(poly)

    # label sizes are for a ~6.6 in wide drawing; a smaller axes (a report panel) scales
    # them down a little so they keep their places relative to the drawing
    text_scale = min(1.0, max(0.75, ax.get_position().width * ax.figure.get_figwidth() / 6.6))
    for node in scene.nodes:
        if node.lines is not None and len(node.lines.points):
            ax.add_collection3d(Line3DCollection(
                node.lines.points, colors=[node.material.rgba], zorder=_Z_LINES,
                linewidths=max(0.3, 0.75 * float(node.lines.width)),  # px -> pt at ~96 dpi
                capstyle="round"))
        elif node.label is not None and show_labels:
            p = node.label.position
            ax.text(p[0], p[1], p[2], node.label.text, color=node.material.rgba,
                    fontsize=text_scale * float(node.label.size), ha="center", va="center",
                    zorder=_Z_LABELS)

    top, bottom, right_edge = 0.98, 0.02, 0.98  # content edges, axes fraction
    if lo is not None:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        pts = np.concatenate([n.points[:: max(1, len(n.points) // 500)]
                              for n in scene.nodes])
        top, bottom, right_edge = _fit(ax, lo, hi, pts)
    ax._xrdflow_content = (1.0 - right_edge, bottom, right_edge, top)  # for save_image's crop
    if axes:
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_pane_color((1.0, 1.0, 1.0, 0.0))
            axis._axinfo["grid"].update(color=(0.85, 0.85, 0.85, 1.0), linewidth=0.3)
            axis.line.set_color("0.6")
            axis.line.set_linewidth(0.5)
        ax.set_xlabel("x, beam (mm)", fontsize=7, color="0.4", labelpad=-4)
        ax.set_ylabel("y (mm)", fontsize=7, color="0.4", labelpad=-4)
        ax.set_zlabel("z, up (mm)", fontsize=7, color="0.4", labelpad=-4)
        ax.tick_params(labelsize=6, colors="0.45", pad=0)
        # room for the tick labels and axis labels around the drawing
        bottom -= 0.09
        ax._xrdflow_content = (1.0 - right_edge - 0.05, bottom, right_edge + 0.12, top + 0.02)
    else:
        ax.set_axis_off()
    # title, legend and notes hug the drawing (not the square 3D axes box around it)
    if title and scene.title:
        ax.set_title(scene.title, fontsize=8.5, pad=3, y=1.0)  # a given y: no auto position
        ax.title.set_y(min(top + 0.02, 1.0))  # (Axes3D.set_title would scale a given y)
    if legend and scene.legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], linestyle="none", marker="o", markersize=6,
                          markerfacecolor=rgba, markeredgecolor="0.3", markeredgewidth=0.4,
                          label=str(name)) for name, rgba in scene.legend]
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(right_edge, bottom),
                  fontsize=6.5, framealpha=0.8, handletextpad=0.2, borderpad=0.3,
                  labelspacing=0.25, ncols=1 + (len(handles) > 4), columnspacing=0.8)
    if notes and scene.notes:
        import textwrap

        width_in = ax.get_position().width * ax.figure.get_figwidth()
        chars = max(40, int(width_in * 72.0 / 3.3))  # 6 pt DejaVu Sans: ~3.3 pt a character
        wrapped = "\n".join(textwrap.fill(str(n), chars, subsequent_indent="   ")
                             for n in scene.notes)
        ax.text2D(0.01, max(bottom - 0.01, 0.0), wrapped,
                  transform=ax.transAxes, fontsize=6, color="0.35", ha="left", va="top",
                  linespacing=1.3)
    return ax


def _content_bbox(ax, pad_in: float = 0.06):
    """The figure area (inches) that holds the drawing, its labels, the title, the legend
    and the notes: what :func:`save_image` writes (no empty margin around a wide scene)."""
    from matplotlib.transforms import Bbox
    from mpl_toolkits.mplot3d import proj3d

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    l, b, r, t = getattr(ax, "_xrdflow_content", (0.0, 0.0, 1.0, 1.0))
    boxes = [Bbox(ax.transAxes.transform([[l, b], [r, t]]))]
    proj = ax.get_proj()
    for text in ax.texts:
        if not text.get_visible() or not text.get_text():
            continue
        ext = text.get_window_extent(renderer)
        if hasattr(text, "_z"):  # a 3D label: centred on its projected anchor
            x, y, _ = proj3d.proj_transform(text._x, text._y, text._z, proj)
            cx, cy = ax.transData.transform((x, y))
            boxes.append(Bbox([[cx - ext.width / 2, cy - ext.height / 2],
                               [cx + ext.width / 2, cy + ext.height / 2]]))
        else:
            boxes.append(ext)
    for artist in (ax.title, ax.get_legend()):
        if artist is not None and artist.get_visible() and (
                not hasattr(artist, "get_text") or artist.get_text()):
            boxes.append(artist.get_window_extent(renderer))
    box = Bbox.union(boxes).transformed(fig.dpi_scale_trans.inverted())
    return box.expanded(1.0, 1.0).padded(pad_in)


def save_image(scene: Scene, path: str | os.PathLike, *, dpi: float = 200,
               size_in: tuple[float, float] = (7, 6), **draw_kw) -> Path:
    """Draw ``scene`` (see :func:`draw`) and write it as PNG, PDF or SVG by ``path``'s suffix.

    Parameters
    ----------
    scene : Scene
        The scene (mm).
    path : str or os.PathLike
        Output file: ``.png``, ``.pdf`` or ``.svg`` (case-insensitive); its folder must
        exist. Written under a temporary name and renamed only when complete
        (:func:`xrdflow.nexus.atomic_output`), so a failed write leaves no file.
    dpi : float
        Resolution in dots per inch (PNG pixels = ``size_in * dpi``).
    size_in : (float, float)
        Figure width and height in inches.
    **draw_kw
        Passed to :func:`draw` (``elev``, ``azim``, ``show_labels``, ``legend``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the suffix is not one of :data:`IMAGE_SUFFIXES`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from xrdflow.scene.model import Scene, Node, Material, box_mesh
    >>> box = Node("box", "sample", Material("red", (1.0, 0.0, 0.0, 1.0)),
    ...            mesh=box_mesh((0, 0, 0), np.eye(3)))
    >>> out = save_image(Scene((box,), "box"), pathlib.Path(tempfile.mkdtemp()) / "b.png", dpi=50)
    >>> out.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..nexus import atomic_output

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"path: {str(path)!r} must end in one of {', '.join(IMAGE_SUFFIXES)} "
                         f"(got {path.suffix or 'no suffix'!r})")
    fig = Figure(figsize=tuple(size_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d", proj_type="ortho")
    draw(scene, ax, **draw_kw)
    bbox = _content_bbox(ax)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=dpi, bbox_inches=bbox, facecolor="white")
    return path
