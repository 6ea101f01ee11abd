"""Write the small CIFs of tests/data/cif/ used by tests/test_structure_factors.py.

    python tests/data/make_cifs.py [OUT_DIR]      (default: tests/data/cif)

Hand-typed except the symmetry operators of the rutile files: the 16 operators of
P4_2/mnm (pymatgen's SpaceGroup, standard setting) are written as they are, and for the
non-standard file transformed to axes a' = c, b' = a, c' = b with the origin moved to
(1/4, 1/8, 0) (new coordinates x' = P x + p): R' = P R P^-1, t' = P t + p - R' p.
"""

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

HEAD = """# written by tests/data/make_cifs.py for tests/test_structure_factors.py
data_{name}
_cell_length_a {a}
_cell_length_b {b}
_cell_length_c {c}
_cell_angle_alpha {alpha}
_cell_angle_beta {beta}
_cell_angle_gamma {gamma}
_symmetry_space_group_name_H-M '{hm}'
"""

SITES = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_{adp}
"""


def _frac(v: float) -> str:
    f = Fraction(float(v)).limit_denominator(24)
    assert abs(float(f) - v) < 1e-12, v
    return "" if f == 0 else (f"+{f}" if f > 0 else f"{f}")


def _xyz(rot: np.ndarray, trans: np.ndarray) -> str:
    parts = []
    for row, t in zip(np.rint(rot).astype(int), trans):
        term = "".join(("+" if c > 0 else "-") + ax for c, ax in zip(row, "xyz") if c)
        parts.append(term.lstrip("+") + _frac(((t + 0.5) % 1.0) - 0.5))
    return ",".join(parts)


def _ops(perm: np.ndarray | None = None, shift=(0.0, 0.0, 0.0)) -> str:
    from pymatgen.symmetry.groups import SpaceGroup

    lines = ["loop_", "_space_group_symop_operation_xyz"]
    p = np.asarray(shift, dtype=float)
    for op in SpaceGroup("P4_2/mnm").symmetry_ops:
        rot, trans = op.rotation_matrix, op.translation_vector
        if perm is not None:
            rot = perm @ rot @ perm.T  # P^-1 = P^T for a permutation
            trans = perm @ trans + p - rot @ p
        lines.append(f"'{_xyz(rot, trans)}'")
    return "\n".join(lines) + "\n"


def rutile(perm: bool) -> str:
    """TiO2 rutile, a = 4.5937, c = 2.9587 A, x(O) = 0.3048 (Ti U = 0.0060, O U = 0.0085)."""
    atoms = {"Ti1": ("Ti", np.zeros(3), "0.0060(2)"),
             "O1": ("O", np.array([0.3048, 0.3048, 0.0]), "0.0085(3)")}
    cell = dict(a=4.5937, b=4.5937, c=2.9587, alpha=90, beta=90, gamma=90)
    if not perm:
        text = HEAD.format(name="rutile_standard", hm="P 42/m n m", **cell) + _ops()
    else:
        pmat = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)  # x' = z, y' = x, z' = y
        shift = np.array([0.25, 0.125, 0.0])
        cell = dict(cell, a=2.9587, b=4.5937, c=4.5937)
        atoms = {k: (el, pmat @ x + shift, u) for k, (el, x, u) in atoms.items()}
        # no H-M symbol: the operators are the setting
        text = HEAD.format(name="rutile_permuted_shifted", hm="P 1", **cell).replace(
            "_symmetry_space_group_name_H-M 'P 1'\n", "") + _ops(pmat, shift)
    text += SITES.format(adp="U_iso_or_equiv")
    for label, (el, x, u) in atoms.items():
        text += f"{label} {el} {x[0]:.4f} {x[1]:.4f} {x[2]:.4f} 1.0 {u}\n"
    return text


def simple(name: str, hm: str, a: float, adp: str, rows: list[str], c: float | None = None,
           gamma: float = 90) -> str:
    text = HEAD.format(name=name, hm=hm, a=a, b=a, c=c or a, alpha=90, beta=90, gamma=gamma)
    return text + SITES.format(adp=adp) + "".join(r + "\n" for r in rows)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "rutile_standard.cif": rutile(perm=False),
        "rutile_permuted_shifted.cif": rutile(perm=True),
        # bcc W, a = 3.1652 A, U = 0.0025 A^2 (no operators: the H-M symbol gives them)
        "W_uiso.cif": simple("W_uiso", "I m -3 m", 3.1652, "U_iso_or_equiv",
                             ["W1 W 0 0 0 1.0 0.00250(5)"]),
        # fcc Al, a = 4.0494 A, B = 0.80 A^2
        "Al_biso.cif": simple("Al_biso", "F m -3 m", 4.0494, "B_iso_or_equiv",
                              ["Al1 Al 0 0 0 1.0 0.80(2)"]),
        # rock salt (Fe0.5Ni0.5)O: Fe and Ni share 4a with their own U (pymatgen merges them)
        "FeNiO_mixed.cif": simple("FeNiO_mixed", "F m -3 m", 4.20, "U_iso_or_equiv", [
            "Fe1 Fe2+ 0 0 0 0.5 0.0100", "Ni1 Ni2+ 0 0 0 0.5 0.0050",
            "O1 O2- 0.5 0.5 0.5 1.0 0.0080"]),
        # one atom without U: warned, no factor for it
        "FeNiO_partial.cif": simple("FeNiO_partial", "F m -3 m", 4.20, "U_iso_or_equiv", [
            "Fe1 Fe 0 0 0 0.5 0.0100", "Ni1 Ni 0 0 0 0.5 0.0050", "O1 O 0.5 0.5 0.5 1.0 ?"]),
    }
    # hcp Mg, anisotropic U only (U11 = U22 = 2 U12 = 0.0100, U33 = 0.0120, U13 = U23 = 0)
    files["Mg_uani.cif"] = simple(
        "Mg_uani", "P 63/m m c", 3.2094, "adp_type",
        ["Mg1 Mg 0.33333 0.66667 0.25 1.0 Uani"], c=5.2108, gamma=120) + (
        "loop_\n_atom_site_aniso_label\n_atom_site_aniso_U_11\n_atom_site_aniso_U_22\n"
        "_atom_site_aniso_U_33\n_atom_site_aniso_U_12\n_atom_site_aniso_U_13\n"
        "_atom_site_aniso_U_23\nMg1 0.0100(2) 0.0100(2) 0.0120(3) 0.0050(1) 0 0\n")
    for name, text in files.items():
        (out / name).write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "cif")
