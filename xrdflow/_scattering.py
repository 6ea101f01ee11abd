"""X-ray atomic scattering factors and the terms of the structure factor (xraydb).

The numbers behind :func:`xrdflow._lattice.structure_factor_sq`; energy-block friendly for
:func:`xrdflow.sweep` (numpy, vectorised over reflections and energies).

Model
-----
For integer indices ``hkl``, ``s = sin(theta)/lambda = |hkl . (a*, b*, c*)| / 2 = 1/(2 d)``
(1/A) and photon energy ``E``::

    F(hkl, E) = sum_j occ_j [f0_j(s) + f'_j(E) + i f''_j(E)] exp(-B_j s^2) exp(2 pi i hkl . x_j)

* ``f0`` : Waasmaier & Kirfel, Acta Cryst. A51, 416 (1995), ``sum_i a_i exp(-b_i s^2) + c``
  (``xraydb.f0(symbol, s)``; xraydb's ``q`` argument *is* ``s = sin(theta)/lambda``, see
  its docstring), neutral atoms (ions are scattered as their neutral atom). The fit is
  published for ``s <= 6 1/A``.
* ``f'``, ``f''`` : Chantler, J. Phys. Chem. Ref. Data 24, 71 (1995) and 29, 597 (2000),
  as xraydb tabulates them. ``xraydb.f1_chantler(el, E_eV)`` returns ``f'`` alone (the
  anomalous real part, *not* ``Z + f'``): its table is Chantler's ``f1`` minus ``Z``, so it
  includes Chantler's relativistic (Cromer-Liberman 3/5) and nuclear-Thomson corrections
  (W at 966 keV: -0.837 e, = the stored ``corr_cl35 + corr_nucl`` = -0.876 e, up to the
  remaining dispersion). ``xraydb.f2_chantler`` returns ``f''`` (> 0). Both take eV. The
  sign convention here is ``f0 + f' + i f''`` with ``exp(+2 pi i hkl . x)``; the opposite
  convention only swaps ``F(hkl)`` and ``F(-h-k-l)``.
* Debye-Waller: isotropic ``exp(-B s^2)`` per site and element (``B = 8 pi^2 U``, A^2),
  applied to the whole atomic factor (thermal displacement moves all of the atom's
  electrons). Sources: :func:`site_b_factors`.

Split for an energy sweep (:func:`scattering_terms`, :func:`anomalous_terms`)::

    F(hkl, E) = f0_sum(hkl) + sum_el (f'_el(E) + i f''_el(E)) * phase_el(hkl)
    phase_el(hkl) = sum_{j of element el} occ_j exp(-B_j s^2) exp(2 pi i hkl . x_j)

``f0`` and ``B`` are real, so ``F(-h-k-l, E) = conj(f0_sum) + sum_el (f' + i f'') *
conj(phase_el)``: :func:`f2_from_terms` gives ``|F(hkl)|^2`` or the Friedel-pair mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from ._phases import B_ISO_PROPERTY
from .options import number, positive, positive_array

__all__ = [
    "CHANTLER_RANGE_KEV",
    "check_debye_waller",
    "site_b_factors",
    "hkl_s",
    "f0",
    "anomalous_terms",
    "scattering_terms",
    "f2_from_terms",
    "debye_waller_text",
    "applied_b_text",
    "model_text",
]

#: energies (keV) covered by xraydb's Chantler tables for every element (1.01 eV - 966 keV)
CHANTLER_RANGE_KEV = (1.01e-3, 966.0)


# --------------------------------------------------------------------------------------
# Debye-Waller factors
# --------------------------------------------------------------------------------------
def check_debye_waller(debye_waller: Any = "cif",
                       debye_waller_factors: Mapping[str, float] | None = None):
    """The validated Debye-Waller choice: ``"cif"``, ``None`` or ``{key: B}`` (A^2).

    ``debye_waller_factors`` (the old keyword, element -> B) is an alias of a mapping given
    as ``debye_waller``; giving both (``debye_waller`` other than its default) is an error.

    >>> check_debye_waller({"Fe": 0.35})
    {'Fe': 0.35}
    >>> check_debye_waller("cif", {"W": 0.2})
    {'W': 0.2}
    """
    if debye_waller_factors is not None:
        if not (isinstance(debye_waller, str) and debye_waller == "cif"):
            raise ValueError("debye_waller_factors: an alias of a debye_waller mapping; "
                             "give one of them")
        debye_waller = debye_waller_factors
    if debye_waller is None or (isinstance(debye_waller, str) and debye_waller == "cif"):
        return debye_waller
    if not isinstance(debye_waller, Mapping):
        raise ValueError("debye_waller: must be 'cif', None or a mapping of element symbol or "
                         f"site label -> B (A^2), got {debye_waller!r}")
    return {str(k): positive(v, f"debye_waller[{k!r}]", allow_zero=True)
            for k, v in debye_waller.items()}


def site_b_factors(structure, debye_waller: Any = "cif") -> list[dict[str, float]]:
    """Per site of ``structure``, ``{element: B}`` (A^2; an element left out has no factor).

    ``debye_waller``: ``"cif"`` reads the site property ``"b_iso"`` that
    :func:`xrdflow.crystal.load_phase` attaches to a structure read from a CIF with
    ``_atom_site_U_iso_or_equiv`` / ``_atom_site_B_iso_or_equiv`` (or anisotropic U / B,
    as U_eq); a float (all species of the site) or ``{element: B}`` per site, ``None`` for
    none. A structure without it (built-in phases, a user's Structure) gets none.
    ``None``: none. A mapping: the site's label (``site.label``, the CIF's
    ``_atom_site_label``) if it is a key, else the element symbol; other keys are ignored
    (one mapping may serve several phases).
    """
    dw = check_debye_waller(debye_waller)
    out: list[dict[str, float]] = []
    props = structure.site_properties.get(B_ISO_PROPERTY) if dw == "cif" else None
    for n, site in enumerate(structure):
        elements = [sp.symbol for sp in site.species]
        if dw is None or (dw == "cif" and (props is None or props[n] is None)):
            out.append({})
        elif dw == "cif":
            value = props[n]
            if isinstance(value, Mapping):
                out.append({str(k): number(v, B_ISO_PROPERTY) for k, v in value.items()})
            else:
                out.append(dict.fromkeys(elements, number(value, B_ISO_PROPERTY)))
        else:
            label = getattr(site, "label", None)
            if label is not None and label in dw:
                out.append(dict.fromkeys(elements, dw[label]))
            else:
                out.append({el: dw[el] for el in elements if el in dw})
    return out


# --------------------------------------------------------------------------------------
# atomic factors
# --------------------------------------------------------------------------------------
def hkl_s(structure, hkl: np.ndarray) -> np.ndarray:
    """``s = sin(theta)/lambda = 1/(2 d)`` (1/A) of integer indices ``hkl`` (n, 3)."""
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    hkl = np.asarray(hkl, dtype=float).reshape(-1, 3)
    return np.linalg.norm(hkl @ recip, axis=1) / 2.0


def f0(symbol: str, s: Any) -> np.ndarray:
    """Waasmaier-Kirfel ``f0(s)`` (electrons) of a neutral atom, ``s = sin(theta)/lambda``.

    >>> round(float(f0("W", 0.0)), 4)  # sum of the a_i plus c: ~Z
    73.9636
    """
    import xraydb

    try:
        return np.asarray(xraydb.f0(symbol, np.asarray(s, dtype=float)), dtype=float)
    except (ValueError, IndexError):
        raise ValueError(f"phase: no X-ray scattering factors for element {symbol}") from None


@lru_cache(maxsize=None)
def _chantler_energies(symbol: str) -> np.ndarray:
    import xraydb

    try:
        return np.asarray(xraydb.chantler_energies(symbol), dtype=float)
    except Exception:  # xraydb: no such element / not in Chantler (Z > 92)
        raise ValueError(f"phase: no anomalous scattering factors (Chantler) for element "
                         f"{symbol}") from None


def _f1(symbol: str, e_ev: np.ndarray) -> np.ndarray:
    """xraydb's ``f1_chantler`` at each energy, exactly as a call with that energy alone.

    xraydb fits a cubic spline through the table points around the requested energies
    (3 on each side of the span); called with an array, the window spans the array, so the
    value at one energy would depend on the others (on the dask blocks of a sweep). One
    call per table interval holding energies keeps each value that of its own window.
    """
    import xraydb

    te = _chantler_energies(symbol)
    interval = np.searchsorted(te, e_ev, side="right") - 1
    out = np.empty(len(e_ev), dtype=float)
    for i in np.unique(interval):  # table intervals (<= table size), not energies
        sel = interval == i
        out[sel] = np.atleast_1d(xraydb.f1_chantler(symbol, e_ev[sel].copy()))
    return out


def anomalous_terms(elements: list[str], energy_kev: Any) -> np.ndarray:
    """``f'(E) + i f''(E)`` (electrons), complex ``(n_energy, n_elements)``.

    Chantler's tables from xraydb (``f1_chantler`` is ``f'`` alone, not ``Z + f'``; see
    the module docstring). ``energy_kev``: a scalar or a 1-D array (keV), within
    :data:`CHANTLER_RANGE_KEV`; a scalar gives one row. The value at an energy does not
    depend on the other energies of the call (energy blocks of a sweep agree with single
    energies to the last bit).

    >>> t = anomalous_terms(["W"], [10.1, 10.3])  # across the W L3 edge (10.207 keV)
    >>> t.shape, bool(t[1, 0].imag > 2 * t[0, 0].imag)
    ((2, 1), True)
    """
    import xraydb

    e = np.atleast_1d(positive_array(energy_kev, "energy_kev"))
    if e.ndim != 1:
        raise ValueError("energy_kev: must be a scalar or a 1-D array of energies")
    lo, hi = CHANTLER_RANGE_KEV
    if e.size and (e.min() < lo or e.max() > hi):
        raise ValueError(f"energy_kev: anomalous scattering factors (Chantler) are tabulated "
                         f"for {lo * 1000:.2f} eV to {hi:g} keV, got {e.min():g} to {e.max():g}")
    e_ev = e * 1000.0
    out = np.empty((len(e), len(elements)), dtype=np.complex128)
    for k, el in enumerate(elements):
        _chantler_energies(el)  # a clear error for an element without a table
        out[:, k] = _f1(el, e_ev) + 1j * np.atleast_1d(xraydb.f2_chantler(el, e_ev.copy()))
    return out


# --------------------------------------------------------------------------------------
# structure-factor terms
# --------------------------------------------------------------------------------------
def _terms(structure, hkl: np.ndarray, b_sites: list[dict[str, float]]):
    """(f0_sum, phase_el, elements, f_abs_sum): ``f_abs_sum = sum_j occ_j |f0_j| T_j``, the
    largest |F| the atoms could give at that s (for the absence test)."""
    hkl = np.asarray(hkl, dtype=float).reshape(-1, 3)
    s2 = hkl_s(structure, hkl) ** 2
    s = np.sqrt(s2)
    elements = list(dict.fromkeys(sp.symbol for site in structure for sp in site.species))
    index = {el: k for k, el in enumerate(elements)}
    f0s = {el: f0(el, s) for el in elements}
    f0_sum = np.zeros(len(hkl), dtype=np.complex128)
    phase_el = np.zeros((len(elements), len(hkl)), dtype=np.complex128)
    f_abs = np.zeros(len(hkl), dtype=float)
    for site, b in zip(structure, b_sites):  # loop over sites; vectorised over reflections
        phase = np.exp(2j * math.pi * (hkl @ np.asarray(site.frac_coords, dtype=float)))
        for sp, occ in site.species.items():
            el = sp.symbol
            weight = np.full(len(hkl), float(occ))
            if b.get(el):
                weight = weight * np.exp(-b[el] * s2)
            f0_sum += f0s[el] * weight * phase
            phase_el[index[el]] += weight * phase
            f_abs += np.abs(f0s[el]) * weight
    return f0_sum, phase_el, elements, f_abs


def scattering_terms(structure, hkl: np.ndarray, *, debye_waller: Any = "cif",
                     debye_waller_factors: Mapping[str, float] | None = None):
    """The energy-independent terms of ``F(hkl, E)``.

    Returns ``(f0_sum, phase_el, elements)``: ``f0_sum`` complex ``(n_hkl,)``,
    ``phase_el`` complex ``(n_elements, n_hkl)``, ``elements`` the symbols (order of first
    appearance in the structure), such that (``anomalous_terms`` row ``a`` at energy E)::

        F(hkl, E) = f0_sum + a @ phase_el
                  = f0_sum + sum_el (f'_el(E) + i f''_el(E)) * phase_el[el]

    with ``phase_el[el] = sum_{sites j of el} occ_j exp(-B_j s^2) exp(2 pi i hkl . x_j)``
    and ``f0_sum = sum_j occ_j f0_j(s) exp(-B_j s^2) exp(2 pi i hkl . x_j)``. For a sweep:
    compute these once per phase, :func:`anomalous_terms` once per energy block, and
    :func:`f2_from_terms` per block (one matrix product, no loop over energies or
    reflections). ``debye_waller``, ``debye_waller_factors``: as in
    :func:`xrdflow._lattice.structure_factor_sq`.
    """
    b_sites = site_b_factors(structure, check_debye_waller(debye_waller, debye_waller_factors))
    f0_sum, phase_el, elements, _ = _terms(structure, hkl, b_sites)
    return f0_sum, phase_el, elements


def f2_from_terms(f0_sum: np.ndarray, phase_el: np.ndarray, anomalous: np.ndarray | None = None,
                  *, friedel_mean: bool = False) -> np.ndarray:
    """``|F|^2`` (electrons^2) from :func:`scattering_terms` and :func:`anomalous_terms`.

    ``anomalous`` None: ``|f0_sum|^2``, shape ``(n_hkl,)``. Else ``(n_energy, n_elements)``
    gives ``(n_energy, n_hkl)``. ``friedel_mean``: ``(|F(hkl)|^2 + |F(-h-k-l)|^2) / 2``, the
    same for every member of a Laue-group family, so that ``multiplicity * value`` is the
    sum of ``|F|^2`` over the family (the powder intensity) also when anomalous dispersion
    breaks Friedel's law (non-centrosymmetric structures).
    """
    if anomalous is None:
        return (f0_sum * f0_sum.conj()).real
    anomalous = np.asarray(anomalous, dtype=np.complex128).reshape(-1, phase_el.shape[0])

    def dispersive(phase):  # a sum over the (few) elements, not a BLAS product: the value
        # at an energy must not depend on how many energies share the call (dask blocks)
        return (anomalous[:, :, None] * phase[None, :, :]).sum(axis=1)

    f_plus = f0_sum[None, :] + dispersive(phase_el)
    f2 = (f_plus * f_plus.conj()).real
    if friedel_mean:
        f_minus = f0_sum.conj()[None, :] + dispersive(phase_el.conj())
        f2 = 0.5 * (f2 + (f_minus * f_minus.conj()).real)
    return f2


# --------------------------------------------------------------------------------------
# provenance (attrs)
# --------------------------------------------------------------------------------------
def debye_waller_text(dw) -> str:
    """A validated ``debye_waller`` as recorded in attrs: ``"cif"``, ``"none"`` or the mapping."""
    return "none" if dw is None else dw if isinstance(dw, str) else str(dict(dw))


def applied_b_text(structure, dw) -> str:
    """The B factors (A^2) applied, by site label and element: ``"W1 W 0.197392"``."""
    seen: dict[str, None] = {}
    for site, b in zip(structure, site_b_factors(structure, dw)):
        for el, value in b.items():
            seen.setdefault(f"{getattr(site, 'label', None) or el} {el} {value:.6g}", None)
    return ", ".join(seen) or "none"


def model_text(anomalous: bool) -> str:
    """The structure-factor model in words, with the xraydb version."""
    import xraydb

    terms = " + Chantler f'(E) + i f''(E) (xraydb f1_chantler, f2_chantler)" if anomalous else ""
    return (f"Waasmaier-Kirfel f0(s) (xraydb f0){terms}, x exp(-B s^2); |F|^2 = mean of the "
            f"Friedel pair; xraydb {getattr(xraydb, '__version__', 'unknown')}")
