"""xrdflow.options: one vocabulary and one family of validators, with messages that name the parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdflow import options as O


@pytest.mark.parametrize("check, good, expected", [
    (O.number, -2, -2.0), (O.number, np.float32(1.5), 1.5),
    (O.positive, 87.1, 87.1), (O.positive, np.int64(3), 3.0),
    (O.positive_int, 300, 300), (O.positive_int, np.int32(2), 2),
    (O.boolean, True, True), (O.string, "Mg", "Mg"),
])
def test_validators_accept_and_normalise(check, good, expected):
    got = check(good, "x")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("check, bad", [
    (O.number, "1"), (O.number, True), (O.number, math.nan), (O.number, math.inf),
    (O.positive, 0), (O.positive, -1), (O.positive, math.nan), (O.positive, False), (O.positive, None),
    (O.positive_int, 0), (O.positive_int, 300.5), (O.positive_int, True), (O.positive_int, "3"),
    (O.boolean, 1), (O.boolean, "true"), (O.string, ""), (O.string, 3),
])
def test_validators_refuse_with_the_parameter_name(check, bad):
    with pytest.raises(ValueError, match=r"^npt: must be"):
        check(bad, "npt")


def test_zero_allowed_when_asked():
    assert O.positive(0, "thickness_mm", allow_zero=True) == 0.0
    assert O.positive_int(0, "seed", allow_zero=True) == 0
    with pytest.raises(ValueError, match="seed: must be an integer >= 0"):
        O.positive_int(-1, "seed", allow_zero=True)


def test_choice_and_optional_choice():
    assert O.choice("flipud", "orientation", O.ORIENTATIONS) == "flipud"
    with pytest.raises(ValueError, match="orientation: must be one of 'as_read', 'flipud', got 'up'"):
        O.choice("up", "orientation", O.ORIENTATIONS)
    with pytest.raises(ValueError, match="engine"):
        O.choice(["auto"], "engine", O.ENGINES)  # unhashable, not an error of its own
    assert O.optional_choice("POISSON", "error_model", O.ERROR_MODELS) == "poisson"
    assert O.optional_choice(None, "error_model", O.ERROR_MODELS) is None
    with pytest.raises(ValueError, match="error_model"):
        O.optional_choice("gauss", "error_model", O.ERROR_MODELS)


def test_ranges():
    assert O.value_range((20, 28), "radial_range") == (20.0, 28.0)
    assert O.value_range((0, math.inf), "two_theta_range", allow_inf=True) == (0.0, math.inf)
    for bad in [(28, 20), (1, 1), (1,), "ab", (0, math.inf), (math.nan, 1), (1, "2")]:
        with pytest.raises(ValueError, match="^radial_range: "):
            O.value_range(bad, "radial_range")
    with pytest.raises(ValueError, match=r"within \[0.0, 180.0\]"):
        O.value_range((-1, 10), "two_theta_range", lo_bound=0.0, hi_bound=180.0)
    assert O.pair([1, 2], "beam_center_px") == (1.0, 2.0)
    with pytest.raises(ValueError, match="beam_center_px"):
        O.pair([1, 2, 3], "beam_center_px")


def test_positive_array():
    np.testing.assert_array_equal(O.positive_array([1, 2], "energy_kev"), [1.0, 2.0])
    for bad in ([], [1, 0], [1, math.nan], "x", [[1], [1, 2]]):
        with pytest.raises(ValueError, match="energy_kev"):
            O.positive_array(bad, "energy_kev")


def test_vocabularies_hold_their_defaults():
    assert O.DEFAULT_COMPRESSION in O.COMPRESSIONS
    assert O.DEFAULT_ORIENTATION in O.ORIENTATIONS
    assert O.DEFAULT_ENGINE in O.ENGINES
    assert O.DEFAULT_BACKGROUND in O.BACKGROUNDS
    assert O.DEFAULT_OVERLAP in O.OVERLAP_POLICIES
    assert O.DEFAULT_UNIT in O.INTEGRATION_UNITS
    split, algo, impl = O.DEFAULT_METHOD
    assert O.PIXEL_SPLITS[split] == split and O.ALGORITHMS[algo] == algo and O.IMPLEMENTATIONS[impl] == impl
    from xrdflow.units import RADIAL_UNITS
    assert set(O.INTEGRATION_UNITS) <= set(RADIAL_UNITS)
