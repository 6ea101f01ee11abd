"""The one home of option vocabularies, defaults and argument validators.

The API, the run-config schema and the CLI all take their allowed values and defaults from
here, so an option's choices are written once. The validators raise ``ValueError`` whose
message starts with the parameter's name (``"energy_kev: must be ..."``); the config layer
passes ``"[section] key"`` as the name, so the same check gives the same message there.

Cheap to import: numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

# ------------------------------------------------------------------------ vocabularies
#: compressions of the raw frames (bitshuffle-LZ4 via hdf5plugin, gzip, none)
COMPRESSIONS = ("bitshuffle", "gzip", "none")
DEFAULT_COMPRESSION = "bitshuffle"

#: how a PONI geometry (and a mask) applies to the image: as fabio reads it, or flipped
#: up-down (Dioptas)
ORIENTATIONS = ("as_read", "flipud")
DEFAULT_ORIENTATION = "as_read"

#: integration engines: ``auto`` (fused where it covers the method, else pyFAI),
#: ``xrdflow`` (fused, or an error), ``pyfai`` (pyFAI frame by frame)
ENGINES = ("auto", "xrdflow", "pyfai")
DEFAULT_ENGINE = "auto"

#: pyFAI method (pixel splitting, algorithm, implementation) used unless told otherwise
DEFAULT_METHOD = ("bbox", "csr", "cython")
#: pyFAI's names (and aliases) for each part of a method -> the canonical name
PIXEL_SPLITS = {"no": "no", "nosplit": "no", "bbox": "bbox", "splitbbox": "bbox", "pseudo": "pseudo",
                "full": "full", "splitpixel": "full"}
ALGORITHMS = {"histogram": "histogram", "histo": "histogram", "lut": "lut", "csr": "csr", "csc": "csc"}
IMPLEMENTATIONS = {"python": "python", "numpy": "python", "cython": "cython", "opencl": "opencl",
                   "ocl": "opencl"}

#: radial units :func:`xrdflow.integrate` produces (the full table is ``units.RADIAL_UNITS``)
INTEGRATION_UNITS = ("q_nm^-1", "q_A^-1", "2th_deg", "2th_rad", "r_mm")
DEFAULT_UNIT = "q_nm^-1"

#: polarization correction by default: none, as pyFAI's ``integrate1d`` (so results compare
#: with pyFAI's as they are). For a horizontally polarised synchrotron beam give 0.99
#: (pyFAI convention: 1 = fully horizontal, 0 = unpolarised, -1 = fully vertical).
DEFAULT_POLARIZATION = None

#: azimuthal sector presets
SECTOR_PRESETS = ("axial-transverse",)

#: error models: ``None`` (no errors) or Poisson counting statistics. The same word is
#: used for integration errors and for fit weights.
ERROR_MODELS = ("poisson",)

#: background under a fitted peak: these two, or Chebyshev polynomials
#: (``("chebyshev", n)`` or ``"chebyshevN"``, order ``n`` up to :data:`MAX_CHEBYSHEV_ORDER`)
BACKGROUNDS = ("linear", "constant")
DEFAULT_BACKGROUND = "linear"
MAX_CHEBYSHEV_ORDER = 4

#: peak shapes of fit_peaks (their formulas: :mod:`xrdflow.profiles`)
SHAPES = ("gaussian", "lorentzian", "pseudo_voigt", "pearson7", "split_pseudo_voigt")
DEFAULT_SHAPE = "gaussian"
#: parameters a joint fit can share between the peaks of a group, and the shapes having them
SHAREABLE = {"fwhm": SHAPES, "eta": ("pseudo_voigt", "split_pseudo_voigt"), "m": ("pearson7",),
             "asymmetry": ("split_pseudo_voigt",)}
#: position links of a group's peaks of one phase
LINKS = ("strain",)

#: what fit_peaks does with a window that holds another listed peak's centre
OVERLAP_POLICIES = ("warn", "raise", "drop", "joint")
DEFAULT_OVERLAP = "warn"

#: fit defaults
DEFAULT_MAX_ITER = 100
DEFAULT_XTOL = 1e-8
DEFAULT_MIN_SNR = 3.0
DEFAULT_MIN_POINTS = 7

#: strain references: the first frame, the reflections' own d0, or {label: d0}
STRAIN_REFERENCES = ("first", "d0")

#: strain_tensor: models, named d0 strategies, out-of-plane assumptions, DEC approximations
STRAIN_TENSOR_MODELS = ("in-plane", "sin2psi")
TENSOR_REFERENCES = ("first", "d0", "fit", "unstrained")
OUT_OF_PLANE = ("plane-stress",)
DEC_APPROXIMATIONS = ("reuss", "voigt", "kroner")

#: dask schedulers that need no cluster; anything else is "local" or a scheduler address
LOCAL_SCHEDULERS = ("threads", "synchronous", "processes")
DEFAULT_SCHEDULER = "local"
JOBQUEUE_KINDS = ("slurm", "pbs", "sge", "lsf", "htcondor", "moab", "oar")
DEFAULT_HOST = "127.0.0.1"


# -------------------------------------------------------------------------- validators
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def number(value: Any, name: str) -> float:
    """A finite real number.

    >>> number(2, "x")
    2.0
    >>> number(float("nan"), "x")
    Traceback (most recent call last):
    ...
    ValueError: x: must be a finite number, got nan
    """
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


def positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``).

    >>> positive(87.1, "energy_kev")
    87.1
    >>> positive(-1, "energy_kev")
    Traceback (most recent call last):
    ...
    ValueError: energy_kev: must be a positive number, got -1
    """
    if not _is_number(value) or not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        what = "a number >= 0" if allow_zero else "a positive number"
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    return float(value)


def positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """An integer >= 1 (or >= 0 with ``allow_zero``); floats and booleans are refused.

    >>> positive_int(3, "npt")
    3
    >>> positive_int(300.5, "npt")
    Traceback (most recent call last):
    ...
    ValueError: npt: must be a positive integer, got 300.5
    """
    low = 0 if allow_zero else 1
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        what = "an integer >= 0" if allow_zero else "a positive integer"
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    return int(value)


def boolean(value: Any, name: str) -> bool:
    """A real ``True``/``False`` (not 0/1, not a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return bool(value)


def string(value: Any, name: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
    return value


def choice(value: Any, name: str, options: Sequence[Any]) -> Any:
    """One of ``options``.

    >>> choice("gzip", "compression", COMPRESSIONS)
    'gzip'
    >>> choice("lzf", "compression", COMPRESSIONS)
    Traceback (most recent call last):
    ...
    ValueError: compression: must be one of 'bitshuffle', 'gzip', 'none', got 'lzf'
    """
    try:
        ok = value in options
    except TypeError:  # unhashable value against a dict/set of options
        ok = False
    if not ok:
        raise ValueError(f"{name}: must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def optional_choice(value: Any, name: str, options: Sequence[str]) -> str | None:
    """``None`` or one of ``options`` (strings compared case-insensitively).

    >>> optional_choice("Poisson", "error_model", ERROR_MODELS)
    'poisson'
    >>> optional_choice(None, "error_model", ERROR_MODELS) is None
    True
    """
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in options:
        return value.lower()
    raise ValueError(f"{name}: must be None or one of {', '.join(map(repr, options))}, got {value!r}")


def background(value: Any, name: str = "background") -> tuple[str, int]:
    """(canonical name, number of coefficients) of a background model.

    ``"constant"`` and ``"linear"`` are Chebyshev orders 0 and 1; ``("chebyshev", n)``,
    ``"chebyshevN"`` or ``"chebyshev:N"`` is order ``n`` (0 to 4; orders 0 and 1 are called
    constant and linear).

    >>> background("linear"), background(("chebyshev", 3)), background("chebyshev:2"), background("chebyshev1")
    (('linear', 2), ('chebyshev3', 4), ('chebyshev2', 3), ('linear', 2))
    >>> background("chebyshev7")
    Traceback (most recent call last):
    ...
    ValueError: background: Chebyshev order must be 0 to 4, got 7
    """
    if isinstance(value, str) and value in BACKGROUNDS:
        return value, 1 if value == "constant" else 2
    order = None
    if isinstance(value, str) and value.lower().startswith("chebyshev"):
        rest = value[len("chebyshev"):].lstrip(":_ ")
        if rest.isdigit():
            order = int(rest)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == "chebyshev" \
            and isinstance(value[1], (int, np.integer)) and not isinstance(value[1], bool):
        order = int(value[1])
    if order is None:
        raise ValueError(f"{name}: must be {', '.join(map(repr, BACKGROUNDS))}, ('chebyshev', n) or "
                         f"'chebyshevN', got {value!r}")
    if not 0 <= order <= MAX_CHEBYSHEV_ORDER:
        raise ValueError(f"{name}: Chebyshev order must be 0 to {MAX_CHEBYSHEV_ORDER}, got {order}")
    if order < 2:  # the same models by their usual names
        return ("constant", 1) if order == 0 else ("linear", 2)
    return f"chebyshev{order}", order + 1


def share(value: Any, shape: str, name: str = "share") -> tuple[str, ...]:
    """The parameters a joint fit shares, checked against the shape.

    >>> share("eta", "pseudo_voigt"), share(["fwhm", "eta"], "pseudo_voigt")
    (('eta',), ('fwhm', 'eta'))
    >>> share(("m",), "gaussian")
    Traceback (most recent call last):
    ...
    ValueError: share: 'm' is not a parameter of shape 'gaussian' (shareable: fwhm)
    """
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if item not in SHAREABLE:
            raise ValueError(f"{name}: must name parameters among {', '.join(SHAREABLE)}, got {item!r}")
        if shape not in SHAREABLE[item]:
            ok = ", ".join(k for k, v in SHAREABLE.items() if shape in v)
            raise ValueError(f"{name}: {item!r} is not a parameter of shape {shape!r} (shareable: {ok})")
    return tuple(dict.fromkeys(items))


def pair(value: Any, name: str) -> tuple[float, float]:
    """Two finite numbers ``(a, b)``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name}: must be a pair of numbers, got {value!r}")
    return number(value[0], name), number(value[1], name)


def value_range(value: Any, name: str, *, lo_bound: float = -np.inf, hi_bound: float = np.inf,
                allow_inf: bool = False) -> tuple[float, float]:
    """``(low, high)`` with ``low < high``, both within ``[lo_bound, hi_bound]``.

    ``allow_inf`` lets ``high`` be ``inf`` (an open upper end).

    >>> value_range([20, 28], "radial_range")
    (20.0, 28.0)
    >>> value_range((5, 1), "radial_range")
    Traceback (most recent call last):
    ...
    ValueError: radial_range: must be (low, high) with low < high, got (5, 1)
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2 \
            or not all(_is_number(v) for v in value):
        raise ValueError(f"{name}: must be a (low, high) pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not math.isfinite(lo) or not (math.isfinite(hi) or (allow_inf and hi == math.inf)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if lo < lo_bound or hi > hi_bound:
        raise ValueError(f"{name}: must lie within [{lo_bound}, {hi_bound}], got {value!r}")
    if not lo < hi:
        raise ValueError(f"{name}: must be (low, high) with low < high, got {value!r}")
    return lo, hi


def positive_array(value: Any, name: str) -> np.ndarray:
    """A non-empty float array of finite values > 0.

    >>> positive_array([1, 2.5], "energy_kev")
    array([1. , 2.5])
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return arr


def nonnegative_array(value: Any, name: str) -> np.ndarray:
    """A non-empty float array of finite values >= 0.

    >>> nonnegative_array([0, 2.5], "thickness_mm")
    array([0. , 2.5])
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be finite and >= 0, got {value!r}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
    return arr


# ------------------------------------------------------- planner (crystal, sweep) vocabularies
#: absorption cross-sections (xraydb): photo-absorption + coherent + incoherent, or photo only
ABSORPTION_KINDS = ("total", "photo")
#: goniometer stages of a sweep: omega only, omega plus a tilt about the sample's x / y axis,
#: or every circle free with the shortest path through the plate (xrdflow._goniometer)
STAGES = ("omega", "omega-chi", "omega-phi", "shortest-path")
#: fixed scattering plane of the two-circle stages: diffracted beam up, or towards +y
SCATTERING_PLANES = ("vertical", "horizontal")
