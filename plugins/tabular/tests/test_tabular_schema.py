"""Column type inference, overrides and their validation, and the typed form of each kind."""
from __future__ import annotations

import pandas as pd
import pytest

import polydiff
from polydiff_tabular.schema import FEW_DISTINCT, infer_kind, infer_schema, typed_frame


def _kinds(frame: pd.DataFrame, column_types=None) -> dict[str, str]:
    return {c.name: c.kind for c in infer_schema(frame, column_types)}


def test_every_kind_is_inferred_from_a_csv(mixed_csv) -> None:
    frame = pd.read_csv(mixed_csv)
    assert _kinds(frame) == {"flag": "boolean", "day": "datetime", "count": "integer", "score": "numeric",
                             "grade": "categorical", "code": "categorical", "stamp": "datetime"}


def test_penguins_types_and_dtypes(penguins) -> None:
    kinds = {c.name: (c.kind, c.dtype, c.has_missing) for c in penguins.columns}
    assert kinds == {"species": ("categorical", "category", False), "island": ("categorical", "category", False),
                     "bill_length_mm": ("numeric", "float64", True), "bill_depth_mm": ("numeric", "float64", True),
                     "flipper_length_mm": ("integer", "Int64", True), "body_mass_g": ("integer", "Int64", True),
                     "sex": ("categorical", "category", True), "year": ("categorical", "int64", False)}
    sex = next(c for c in penguins.columns if c.name == "sex")
    assert sex.categories == ("female", "male")


def test_integral_columns_with_few_values_are_categories_that_stay_integers() -> None:
    few = pd.DataFrame({"rating": [1, 2, 3, 4, 5] * 4, "many": list(range(20))})
    assert _kinds(few) == {"rating": "categorical", "many": "integer"}
    more = pd.DataFrame({"rating": list(range(FEW_DISTINCT + 1)) * 3})
    assert _kinds(more) == {"rating": "integer"}
    typed = typed_frame(few, infer_schema(few))
    assert typed["rating"].dtype == "int64" and typed["many"].dtype == "int64"


def test_text_numbers_booleans_and_dates() -> None:
    frame = pd.DataFrame({"n": ["1.5", "2.25", "3", "4"], "yes": ["yes", "no", "no", "yes"],
                          "d": ["01/02/2020", "03/04/2020", "05/06/2021", "07/08/2021"], "c": ["x", "y", "x", "z"]})
    assert _kinds(frame) == {"n": "numeric", "yes": "boolean", "d": "datetime", "c": "categorical"}
    typed = typed_frame(frame, infer_schema(frame))
    assert typed["yes"].tolist() == [True, False, False, True] and typed["yes"].dtype == bool
    assert typed["d"].dt.year.tolist() == [2020, 2020, 2021, 2021]


def test_pandas_categories_keep_their_order() -> None:
    frame = pd.DataFrame({"size": pd.Categorical(["m", "s", "l", "m"], categories=["s", "m", "l"], ordered=True)})
    (column,) = infer_schema(frame)
    assert column.kind == "categorical" and column.categories == ("s", "m", "l") and column.ordered


def test_overrides_replace_inference() -> None:
    frame = pd.DataFrame({"zip": [10115, 20095, 10115, 80331] * 5, "year": [2007, 2008, 2009, 2008] * 5})
    assert _kinds(frame) == {"zip": "categorical", "year": "categorical"}
    assert _kinds(frame, {"year": "integer", "zip": "numeric"}) == {"zip": "numeric", "year": "integer"}
    typed = typed_frame(frame, infer_schema(frame, {"zip": "categorical"}))
    assert typed["zip"].dtype == "int64"


def test_overrides_are_validated() -> None:
    frame = pd.DataFrame({"a": ["x", "y", "x"], "b": [1.5, 2.5, 3.5]})
    with pytest.raises(polydiff.ConfigError, match=r"column_types names column 'c'.*columns: \['a', 'b'\]"):
        infer_schema(frame, {"c": "numeric"})
    with pytest.raises(polydiff.ConfigError, match=r"column_types\['a'\] = 'text' is not a kind"):
        infer_schema(frame, {"a": "text"})
    with pytest.raises(polydiff.ConfigError, match=r"column 'a' is typed numeric but row 0 .* holds 'x', which is not a number"):
        infer_schema(frame, {"a": "numeric"})
    with pytest.raises(polydiff.ConfigError, match=r"column 'b' is typed integer but holds fractional values"):
        infer_schema(frame, {"b": "integer"})


def test_a_single_valued_category_cannot_be_generated() -> None:
    with pytest.raises(polydiff.ConfigError, match=r"column 'k' has the single value 'same'.*drop it"):
        infer_schema(pd.DataFrame({"k": ["same"] * 4, "v": [1.0, 2.0, 3.0, 4.5]}))


def test_missing_cells_give_nullable_dtypes() -> None:
    frame = pd.DataFrame({"i": [1.0, None, 30.0, 4.0, 50.0, 6.0, 70.0],
                          "b": [True, None, False, True, False, True, True]})
    columns = infer_schema(frame)
    assert [(c.kind, c.dtype, c.has_missing) for c in columns] == [("integer", "Int64", True),
                                                                   ("boolean", "boolean", True)]
    typed = typed_frame(frame, columns)
    assert typed["i"].isna().tolist() == typed["b"].isna().tolist() == [False, True, False, False, False, False, False]


def test_an_untypeable_dtype_is_named() -> None:
    series = pd.Series([pd.Timedelta(1, "h"), pd.Timedelta(2, "h")], name="wait")
    with pytest.raises(polydiff.ConfigError, match=r"column 'wait' has dtype timedelta64.*set column_types"):
        infer_kind(series, "t.csv")
