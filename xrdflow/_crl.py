"""Objective-lens optics of a compound refractive lens (CRL), for dark-field X-ray microscopy.

:func:`crl_optics` answers, over a range of photon energies, where the sample and the
detector go for a CRL objective to image the sample: the thick-lens focal length, the
sample-lens and lens-detector distances and the magnification, for a given sample-detector
distance or a given magnification. :func:`read_lens` reads and checks a lens description.

Conventions
-----------
Lengths in mm (the radius of curvature in the lens file is in micrometres), energy in keV.
The optical axis runs downstream from the sample. The centre of the FIRST lenslet is
position 0; a series of ``N`` lenslets at spacing ``s`` (centre to centre) is
``(N - 1) s`` long, and a ``[separator_K]`` spans the last lenslet of series ``K`` to the
first of series ``K + 1`` (centre to centre). So:

- ``d1_mm``: sample to the centre of the first lenslet;
- ``lens_length_mm``: centre of the first lenslet to the centre of the last;
- ``d2_mm``: centre of the last lenslet to the detector;
- ``total_distance_mm = d1_mm + lens_length_mm + d2_mm``: sample to detector.

Model: every lenslet is a thin paraboloid biconcave lens of apex radius ``R``, focal length
``f1 = R / (2 delta)``, ``delta`` the refractive decrement of its material from xraydb's
Chantler tables (``xraydb.xray_delta_beta``); absorption and the aperture are ignored. Rays
``(x, x')`` go through ray transfer matrices: free space ``[[1, L], [0, 1]]``, a lenslet
``[[1, 0], [-1/f1, 1]]``. Their product from the first to the last lenslet is the lens
matrix ``[[A, B], [C, D]]`` (computed for all energies at once). ``focal_length_mm`` is
the effective focal length ``-1/C`` of this thick lens, measured from its principal planes
(not from a lenslet); ``focal_length_thin_mm`` is the thin-lens sum
``1/f = sum_i N_i 2 delta_i / R_i`` (all lenslets at one plane), for comparison.

Imaging: the sample-to-detector matrix is ``P(d2) [[A, B], [C, D]] P(d1)``. Its upper-right
element vanishes (a point images to a point) when ``d2 = -(A d1 + B) / (C d1 + D)``, and
its upper-left element is then the lateral magnification ``M = 1 / (C d1 + D)``; the image
is real and inverted, ``M < 0``, and ``magnification`` reports ``|M|``. Given ``|M|``:
``d1 = (1/M - D) / C`` and ``d2 = -M (A d1 + B)``. Given the total distance ``T``, with
``t = A + D + (T - L) C``, the imaging ``M`` solves ``M^2 - t M + 1 = 0``: two solutions
with reciprocal magnifications (sample near the lens and image far, or the reverse). The
MAGNIFYING one (``|M| >= 1``, sample near the lens: the one DF-XRM uses) is returned,
``M = (t - sqrt(t^2 - 4)) / 2``. A discriminant negative by rounding only is taken as 0.

No imaging solution is NaN, for that energy, in ``d1_mm``, ``d2_mm``, ``magnification``
and ``total_distance_mm`` (not an error): the total distance is too short (``t > -2``,
roughly ``T - L < 4 f``), the lens does not converge (``C >= 0``), or the solution would
put the sample or the detector inside the lens (``d1 < 0`` or ``d2 < 0``, e.g. at low
energy a strong lens focuses inside itself).

Lens file (TOML; the same structure as a mapping is accepted)::

    description = "ID06 objective"            # optional
    [lens_series_0]
    "radius_of_curvature_in_µm" = 50.0        # or radius_of_curvature_in_um
    number_of_lenses = 68
    lens_spacing_in_mm = 1.6                  # optional for a single lenslet
    [lens_series_0.material]
    atoms_in_Unit_cell = ["Be", "Be"]         # element symbols of the unit cell ...
    unit_cell_volume_in_AA3 = 16.2185         # ... and its volume in Angstrom^3
    # or: formula = "Be" and density_g_cm3 = 1.848
    [separator_0]
    spacing_in_mm = 2.0
    [lens_series_1]
    ...

The radius key may be spelt with the micro sign (U+00B5), the Greek mu (U+03BC) or ``um``.
TOML 1.0 (Python's ``tomllib``) wants a non-ASCII key quoted; a file whose bare keys hold
non-ASCII characters (written for TOML 1.1 or the lenient ``toml`` package) is read by
quoting them. Series are numbered 0, 1, ... without gaps, with a separator between every
two; unknown keys and bad values raise ``ValueError`` naming the file (or ``lens``), the
table and the key.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .options import positive, positive_array, positive_int
from .units import DIMENSIONLESS, KEV, MM, attrs

__all__ = ["Lens", "LensSeries", "crl_optics", "lens_matrix", "read_lens", "refractive_decrement"]

MODEL = "thick lens: ray transfer matrices through every lenslet"
RADIUS_KEYS = ("radius_of_curvature_in_\u00b5m", "radius_of_curvature_in_\u03bcm",
               "radius_of_curvature_in_um")
SERIES_KEYS = frozenset(RADIUS_KEYS + ("number_of_lenses", "lens_spacing_in_mm", "material"))
CELL_KEYS = ("atoms_in_Unit_cell", "unit_cell_volume_in_AA3")
FORMULA_KEYS = ("formula", "density_g_cm3")
#: grams per atomic mass unit divided by cm^3 per Angstrom^3: density = mass (u) / V (A^3) * this
_U_PER_A3_IN_G_CM3 = 1.0 / (6.02214076e23 * 1e-24)
#: xraydb's Chantler tables cover H to U
_MAX_Z = 92
_SERIES = re.compile(r"lens_series_(\d+)\Z")
_SEPARATOR = re.compile(r"separator_(\d+)\Z")
_BARE_NON_ASCII_KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-]*[^\x00-\x7f][^\s=\"'\[\]#]*)(\s*=)", re.MULTILINE)


@dataclass(frozen=True)
class LensSeries:
    """Identical lenslets at a regular spacing."""

    radius_um: float  #: apex radius of curvature of each paraboloid surface, micrometres
    number_of_lenses: int
    spacing_mm: float  #: centre to centre
    formula: str  #: chemical formula (xraydb syntax)
    density_g_cm3: float


@dataclass(frozen=True)
class Lens:
    """A CRL: lens series in beam order and the separators between them."""

    series: tuple[LensSeries, ...]
    separators_mm: tuple[float, ...]  #: last lenslet of series k to first of series k + 1
    source: str = "lens"  #: file path, or "lens" for a mapping
    name: str | None = None  #: the file's ``description``

    def gaps_mm(self) -> list[float]:
        """Centre-to-centre distances between consecutive lenslets, in beam order."""
        gaps: list[float] = []
        for k, s in enumerate(self.series):
            if k:
                gaps.append(self.separators_mm[k - 1])
            gaps.extend([s.spacing_mm] * (s.number_of_lenses - 1))
        return gaps

    @property
    def length_mm(self) -> float:
        """First to last lenslet centre."""
        return float(math.fsum(self.gaps_mm()))

    @property
    def description(self) -> str:
        parts = []
        for k, s in enumerate(self.series):
            if k:
                parts.append(f"separator {self.separators_mm[k - 1]:g} mm")
            parts.append(f"{s.number_of_lenses} x {s.formula} R = {s.radius_um:g} um "
                         f"every {s.spacing_mm:g} mm")
        total = sum(s.number_of_lenses for s in self.series)
        text = f"{total} lenslets over {self.length_mm:.6g} mm: " + ", ".join(parts)
        return f"{self.name}: {text}" if self.name else text


# ------------------------------------------------------------------------------ reading
def _load(lens: Any) -> tuple[Mapping[str, Any], str]:
    if isinstance(lens, Mapping):
        return lens, "lens"
    if not isinstance(lens, (str, Path)):
        raise ValueError(f"lens: must be a TOML file path, a mapping or a Lens, got {lens!r}")
    path = Path(lens)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lens file not found")
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), str(path)
    except tomllib.TOMLDecodeError as exc:
        quoted = _BARE_NON_ASCII_KEY.sub(r'\1"\2"\3', text)
        if quoted != text:
            try:
                return tomllib.loads(quoted), str(path)
            except tomllib.TOMLDecodeError:
                pass
        raise ValueError(f"{path}: not a valid TOML lens file: {exc}") from None


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a table, got {value!r}")
    return value


def _require(table: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ValueError(f"{where} {key}: missing key")
    return table[key]


def _unknown(table: Mapping[str, Any], allowed, where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unknown key {extra[0]!r} (expected {', '.join(sorted(allowed))})")


def _elements() -> frozenset[str]:
    import xraydb

    return frozenset(xraydb.atomic_symbol(z) for z in range(1, _MAX_Z + 1))


def _material(table: Mapping[str, Any], where: str) -> tuple[str, float]:
    """(formula, density g/cm^3) of a ``material`` table: unit cell or formula + density."""
    import xraydb

    has_cell, has_formula = (any(k in table for k in keys) for keys in (CELL_KEYS, FORMULA_KEYS))
    if has_cell == has_formula:
        raise ValueError(f"{where}: give either {' and '.join(CELL_KEYS)}, or "
                         f"{' and '.join(FORMULA_KEYS)}")
    _unknown(table, CELL_KEYS if has_cell else FORMULA_KEYS, where)
    known = _elements()
    if has_cell:
        atoms = _require(table, CELL_KEYS[0], where)
        if isinstance(atoms, str) or not isinstance(atoms, (list, tuple)) or not atoms:
            raise ValueError(f"{where} {CELL_KEYS[0]}: must be a non-empty list of element "
                             f"symbols, got {atoms!r}")
        for sym in atoms:
            if sym not in known:
                raise ValueError(f"{where} {CELL_KEYS[0]}: unknown element {sym!r}")
        volume = positive(_require(table, CELL_KEYS[1], where), f"{where} {CELL_KEYS[1]}")
        counts = Counter(atoms)
        formula = "".join(f"{sym}{n if n > 1 else ''}" for sym, n in counts.items())
        mass = math.fsum(xraydb.atomic_mass(sym) for sym in atoms)
        return formula, mass / volume * _U_PER_A3_IN_G_CM3
    formula = _require(table, "formula", where)
    try:
        parsed = xraydb.chemparse(formula) if isinstance(formula, str) else {}
    except ValueError:
        parsed = {}
    bad = [sym for sym in parsed if sym not in known]
    if not parsed or bad:
        raise ValueError(f"{where} formula: not a chemical formula of known elements, got {formula!r}")
    density = positive(_require(table, "density_g_cm3", where), f"{where} density_g_cm3")
    return formula, density


def _series(table: Mapping[str, Any], where: str) -> LensSeries:
    _unknown(table, SERIES_KEYS, where)
    radii = [k for k in RADIUS_KEYS if k in table]
    if len(radii) != 1:
        what = "missing key" if not radii else f"give one of {', '.join(radii)}, not several"
        raise ValueError(f"{where} {RADIUS_KEYS[0]}: {what}")
    radius = positive(table[radii[0]], f"{where} {radii[0]}")
    number = positive_int(_require(table, "number_of_lenses", where), f"{where} number_of_lenses")
    if "lens_spacing_in_mm" in table or number > 1:
        spacing = positive(_require(table, "lens_spacing_in_mm", where), f"{where} lens_spacing_in_mm")
    else:
        spacing = 0.0
    formula, density = _material(_table(_require(table, "material", where), f"{where} material"),
                                 f"{where.rstrip(']')}.material]")
    return LensSeries(radius, number, spacing, formula, density)


def read_lens(lens: Any) -> Lens:
    """Read and check a CRL description: a TOML file path, a mapping, or a :class:`Lens`.

    The format is in the module docstring. Raises ``ValueError`` naming the file (or
    ``lens``), the table and the key for any bad entry, ``FileNotFoundError`` for a missing
    file.

    Examples
    --------
    >>> lens = read_lens({"lens_series_0": {"radius_of_curvature_in_um": 50.0,
    ...     "number_of_lenses": 10, "lens_spacing_in_mm": 1.6,
    ...     "material": {"formula": "Be", "density_g_cm3": 1.848}}})
    >>> lens.description
    '10 lenslets over 14.4 mm: 10 x Be R = 50 um every 1.6 mm'
    """
    if isinstance(lens, Lens):
        return lens
    raw, source = _load(lens)
    series: dict[int, LensSeries] = {}
    separators: dict[int, float] = {}
    name = raw.get("description")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"{source}: description: must be a non-empty string, got {name!r}")
    for key, value in raw.items():
        if key == "description":
            continue
        if m := _SERIES.match(key):
            series[int(m[1])] = _series(_table(value, f"{source}: [{key}]"), f"{source}: [{key}]")
        elif m := _SEPARATOR.match(key):
            where = f"{source}: [{key}]"
            sep = _table(value, where)
            _unknown(sep, ("spacing_in_mm",), where)
            separators[int(m[1])] = positive(_require(sep, "spacing_in_mm", where),
                                             f"{where} spacing_in_mm")
        else:
            raise ValueError(f"{source}: unknown key {key!r} (expected lens_series_N, "
                             "separator_N, description)")
    if not series:
        raise ValueError(f"{source}: no [lens_series_0] table")
    for k in range(max(series) + 1):
        if k not in series:
            raise ValueError(f"{source}: [lens_series_{k}] missing (series are numbered 0, 1, ...)")
    for k in range(max(series)):
        if k not in separators:
            raise ValueError(f"{source}: [separator_{k}] spacing_in_mm: missing key (between "
                             f"[lens_series_{k}] and [lens_series_{k + 1}])")
    for k in separators:
        if k >= max(series):
            raise ValueError(f"{source}: [separator_{k}]: no [lens_series_{k + 1}] after it")
    n = max(series) + 1
    return Lens(tuple(series[k] for k in range(n)), tuple(separators[k] for k in range(n - 1)),
                source, name)


# ------------------------------------------------------------------------------ optics
def _energies(energy_kev: Any, lens: Lens) -> np.ndarray:
    import xraydb

    energy = positive_array(energy_kev, "energy_kev")
    if energy.ndim > 1:
        raise ValueError(f"energy_kev: must be a number or a 1-D array, got shape {energy.shape}")
    energy = np.atleast_1d(energy)
    elements = {el for s in lens.series for el in xraydb.chemparse(s.formula)}
    lo = max(float(xraydb.chantler_energies(el).min()) for el in elements) / 1000.0
    hi = min(float(xraydb.chantler_energies(el).max()) for el in elements) / 1000.0
    if energy.min() < lo or energy.max() > hi:
        raise ValueError(f"energy_kev: must lie within xraydb's Chantler tables for "
                         f"{', '.join(sorted(elements))} ({lo:g} to {hi:g} keV), got {energy_kev!r}")
    return energy


def refractive_decrement(lens: Lens, energy_kev: np.ndarray) -> np.ndarray:
    """``delta`` of each series' material, shape ``(energy, lens_series)`` (xraydb).

    xraydb fits its f1 spline over the table rows that span the energies asked for, so the
    value at one energy moves by ~1e-11 (relative) with the other energies of the call.
    """
    import xraydb

    e_ev = np.asarray(energy_kev, dtype=float) * 1000.0
    cols = [np.broadcast_to(np.asarray(xraydb.xray_delta_beta(s.formula, s.density_g_cm3, e_ev)[0],
                                       dtype=float), e_ev.shape) for s in lens.series]
    return np.stack(cols, axis=-1)


def lens_matrix(lens: Lens, delta: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ray transfer matrix ``(A, B, C, D)`` (mm, 1/mm) from the first to the last lenslet.

    ``delta`` has shape ``(..., lens_series)``; each element has shape ``(...)``.
    """
    delta = np.asarray(delta, dtype=float)
    power = 2.0 * delta / (np.array([s.radius_um for s in lens.series]) * 1e-3)  # 1/f1, 1/mm
    which = [k for k, s in enumerate(lens.series) for _ in range(s.number_of_lenses)]
    gaps = [0.0] + lens.gaps_mm()
    a, d = np.ones(delta.shape[:-1]), np.ones(delta.shape[:-1])
    b, c = np.zeros(delta.shape[:-1]), np.zeros(delta.shape[:-1])
    for k, gap in zip(which, gaps):
        if gap:  # free space [[1, gap], [0, 1]] on the left
            a, b = a + gap * c, b + gap * d
        p = power[..., k]  # thin lenslet [[1, 0], [-p, 1]] on the left
        c, d = c - p * a, d - p * b
    return a, b, c, d


def _conjugates(abcd, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2) imaging with signed lateral magnification ``m``; NaN where unphysical."""
    a, b, c, d = abcd
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (1.0 / m - d) / c
        d2 = -m * (a * d1 + b)
    bad = ~(np.isfinite(d1) & np.isfinite(d2) & (d1 >= 0) & (d2 >= 0) & (c < 0) & (m < 0))
    return np.where(bad, np.nan, d1), np.where(bad, np.nan, d2)


def _magnifying_solution(abcd, free_mm: float) -> np.ndarray:
    """Signed magnification of the magnifying image with ``d1 + d2 = free_mm``; NaN if none."""
    a, _, c, d = abcd
    t = a + d + free_mm * c
    disc = (t - 2.0) * (t + 2.0)
    # t a rounding error above -2 (total distance at the minimum) is taken as -2: |M| = 1
    tiny = (disc < 0) & (t < 0) & (t + 2.0 < 1e-12 * (np.abs(a) + np.abs(d) + np.abs(free_mm * c)))
    disc = np.where(tiny, 0.0, disc)
    with np.errstate(invalid="ignore"):
        m = (t - np.sqrt(disc)) / 2.0
    return np.where((disc >= 0) & (t < 0), m, np.nan)


def crl_optics(lens: Any, *, energy_kev: Any, total_distance_mm: float | None = None,
               magnification: float | None = None) -> xr.Dataset:
    """Thick-lens imaging optics of a CRL objective over energy (see the module docstring).

    Parameters
    ----------
    lens
        TOML lens file path, a mapping of the same structure, or a :class:`Lens`.
    energy_kev
        Photon energy (keV), a number or a 1-D array; the result always has an ``energy``
        dimension (length 1 for a number).
    total_distance_mm, magnification
        Exactly one: the sample-detector distance (the magnifying solution is returned), or
        the lateral magnification ``|M|`` wanted. NaN where no image is possible.

    Returns
    -------
    xarray.Dataset
        Over ``energy``: ``focal_length_mm`` (thick, from the principal planes),
        ``focal_length_thin_mm``, ``d1_mm``, ``d2_mm``, ``magnification`` (``|M|``, the
        image is inverted), ``total_distance_mm``; ``lens_length_mm`` (scalar); ``delta``
        over ``(energy, lens_series)``.

    Examples
    --------
    >>> lens = {"lens_series_0": {"radius_of_curvature_in_um": 50.0, "number_of_lenses": 88,
    ...     "lens_spacing_in_mm": 1.6, "material": {"formula": "Be", "density_g_cm3": 1.848}}}
    >>> ds = crl_optics(lens, energy_kev=17.0, total_distance_mm=5000.0)
    >>> round(float(ds.focal_length_mm[0]), 1), round(float(ds.focal_length_thin_mm[0]), 1)
    (266.3, 241.1)
    >>> round(float(ds.magnification[0]), 2), round(float(ds.d1_mm[0]), 1)
    (16.74, 209.0)
    >>> total = ds.d1_mm + ds.lens_length_mm + ds.d2_mm
    >>> bool(np.allclose(total, 5000.0))
    True
    """
    if (total_distance_mm is None) == (magnification is None):
        raise ValueError("total_distance_mm, magnification: give exactly one of them")
    lens = read_lens(lens)
    energy = _energies(energy_kev, lens)
    length = lens.length_mm
    delta = refractive_decrement(lens, energy)
    abcd = lens_matrix(lens, delta)
    if total_distance_mm is not None:
        total = positive(total_distance_mm, "total_distance_mm")
        m = _magnifying_solution(abcd, total - length)
        condition = f"total_distance_mm = {total:g} given; the magnifying solution (|M| >= 1)"
    else:
        m = np.full(energy.shape, -positive(magnification, "magnification"))
        condition = f"magnification = {magnification:g} given"
    d1, d2 = _conjugates(abcd, m)
    a, _, c, _ = abcd
    with np.errstate(divide="ignore"):
        focal = -1.0 / c
    thin = 1.0 / np.sum(np.array([s.number_of_lenses / (s.radius_um * 1e-3) for s in lens.series])
                        * 2.0 * delta, axis=-1)
    e = ("energy",)
    data_vars = dict(
        focal_length_mm=(e, focal, attrs(
            "effective focal length of the thick lens, from its principal planes", MM)),
        focal_length_thin_mm=(e, thin, attrs(
            "thin-lens focal length, 1/f = sum of N 2 delta / R over the series", MM)),
        d1_mm=(e, d1, attrs("sample to the centre of the first lenslet", MM)),
        lens_length_mm=((), length, attrs("centre of the first lenslet to that of the last", MM)),
        d2_mm=(e, d2, attrs("centre of the last lenslet to the detector", MM)),
        total_distance_mm=(e, d1 + length + d2, attrs("sample to detector", MM)),
        magnification=(e, np.abs(a + c * d2), attrs(
            "lateral magnification |M|", DIMENSIONLESS,
            image="real and inverted: the signed lateral magnification is -magnification")),
        delta=(("energy", "lens_series"), delta, attrs(
            "refractive decrement of the series' material (xraydb, Chantler)", DIMENSIONLESS)),
    )
    coords = dict(
        energy=("energy", energy, attrs("photon energy", KEV)),
        lens_series=("lens_series", np.arange(len(lens.series)), attrs("lens series index")),
        material=("lens_series", [s.formula for s in lens.series], attrs("lens material")),
    )
    from . import __version__

    ds_attrs = dict(title="xrdflow CRL objective optics", xrdflow_version=__version__,
                    lens=lens.description, lens_source=lens.source, model=MODEL,
                    imaging_condition=condition,
                    positions="0 = centre of the first lenslet; d1 before it, d2 after the last")
    return xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
