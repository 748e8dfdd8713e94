"""Option tables become frozen dataclasses: bounds a plugin declares with ``Annotated`` and
``Range`` are checked with the dotted key and said in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from streamserver import ConfigError
from streamserver.schema import ABOVE_ZERO, AT_LEAST_ONE, AT_LEAST_ZERO, Range, build


@dataclass(frozen=True, slots=True)
class PacedOptions:
    delay_ms: Annotated[float, AT_LEAST_ZERO] = 10.0
    rate: Annotated[float, ABOVE_ZERO] = 1.0
    batch: Annotated[int, AT_LEAST_ONE] | None = None
    percent: Annotated[int, Range(0, 100)] = 50


def refusal(table: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        build(PacedOptions, table, "providers.paced")
    return str(caught.value)


def test_values_inside_the_bounds_are_kept():
    options = build(PacedOptions, {"delay_ms": 0, "batch": 1, "percent": 100}, "providers.paced")

    assert (options.delay_ms, options.batch, options.percent) == (0.0, 1, 100)


def test_a_value_below_its_minimum_names_the_key_and_the_bound():
    assert refusal({"delay_ms": -1}) == (
        "providers.paced.delay_ms: expected a number at least 0, got -1"
    )


def test_an_excluded_minimum_refuses_the_minimum_itself():
    assert refusal({"rate": 0}) == "providers.paced.rate: expected a number greater than 0, got 0"


def test_an_optional_bounded_value_may_be_left_out_but_not_be_out_of_bounds():
    assert refusal({"batch": 0}) == ("providers.paced.batch: expected an integer at least 1, got 0")


def test_a_range_with_both_ends_is_said_as_from_to():
    assert refusal({"percent": 101}) == (
        "providers.paced.percent: expected an integer from 0 to 100, got 101"
    )


def test_a_wrong_type_is_refused_before_the_bound_is_checked():
    assert (
        refusal({"delay_ms": "soon"}) == "providers.paced.delay_ms: expected a number, got 'soon'"
    )
