"""Spaces validate batches and name the field, the space and the problem."""
import pytest
import torch

import polydiff
from polydiff import Bounded, Continuous, Discrete, IncompatibleSpaceError, validate_state


def test_shapes_are_normalised_and_checked():
    assert Continuous(3).shape == (3,)
    assert Continuous([2, 4]).dim == 8
    with pytest.raises(ValueError, match="positive"):
        Continuous((0, 2))
    with pytest.raises(ValueError, match="high > low"):
        Bounded((2,), low=1.0, high=1.0)
    with pytest.raises(ValueError, match="vocab_size"):
        Discrete((4,), vocab_size=1)


def test_bounded_is_a_continuous_space_of_its_own_kind():
    box = Bounded((2,), -1.0, 1.0)
    assert isinstance(box, Continuous) and box.kind == "bounded"


def test_validate_state_accepts_a_good_batch():
    spaces = {"x": Continuous((2,)), "tok": Discrete((5,), 7), "a": Bounded((1,), 0, 1)}
    state = {"x": torch.randn(4, 2), "tok": torch.randint(0, 7, (4, 5)), "a": torch.rand(4, 1)}
    validate_state(state, spaces)
    assert polydiff.batch_size(state) == 4


@pytest.mark.parametrize("field,value,message", [
    ("x", torch.randn(4, 3), r"field 'x' .* expected shape \(B, 2\)"),
    ("x", torch.full((4, 2), float("nan")), "NaN"),
    ("x", torch.zeros(4, 2, dtype=torch.int64), "floating-point"),
    ("tok", torch.full((4, 5), 7), r"token ids outside \[0, 7\)"),
    ("tok", torch.zeros(4, 5), "integer tensor"),
    ("a", torch.full((4, 1), 1.5), r"outside the box \[0, 1\]"),
])
def test_validate_state_names_field_and_problem(field, value, message):
    spaces = {"x": Continuous((2,)), "tok": Discrete((5,), 7), "a": Bounded((1,), 0, 1)}
    state = {"x": torch.randn(4, 2), "tok": torch.randint(0, 7, (4, 5)), "a": torch.rand(4, 1)}
    state[field] = value
    with pytest.raises(IncompatibleSpaceError, match=message):
        validate_state(state, spaces)


def test_validate_state_reports_missing_extra_and_batch_mismatch():
    spaces = {"x": Continuous((2,)), "y": Continuous((1,))}
    with pytest.raises(IncompatibleSpaceError, match=r"missing \['y'\].*unexpected \['z'\]"):
        validate_state({"x": torch.zeros(2, 2), "z": torch.zeros(2, 1)}, spaces)
    with pytest.raises(IncompatibleSpaceError, match="different batch sizes"):
        validate_state({"x": torch.zeros(2, 2), "y": torch.zeros(3, 1)}, spaces)
