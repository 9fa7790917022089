"""Column types of a table: inference, overrides and the typed (canonical) form of each column.

Every column gets one of five kinds (``KINDS``), inferred by these rules, in this order
(README, "Typing rules"):

1. A column with no value at all (every cell missing) is a ``ConfigError``: drop it.
2. ``column_types`` overrides inference for the columns it names.
3. ``bool`` / ``boolean`` dtypes, and text columns holding only true / false words
   (``TRUE_WORDS``, ``FALSE_WORDS``), are ``boolean``.
4. ``datetime64`` dtypes, and text columns whose every value looks like a date
   (``DATE_PATTERN``) and parses with ``pandas.to_datetime``, are ``datetime``.
5. Numbers (numeric dtypes, or text columns whose every value parses as a number): ``integer``
   when every value is integral, else ``numeric``; integral columns with at most
   ``FEW_DISTINCT`` distinct values are ``categorical`` (codes such as a year or a rating),
   and keep their integer dtype on output.
6. ``category`` dtypes are ``categorical`` (their categories and order kept).
7. Other text is ``categorical``, unless it is mostly numbers with some words (``ConfigError``:
   mixed numbers and words) or looks like free text / identifiers, with more than
   ``FREE_TEXT_MIN_DISTINCT`` distinct values that are more than ``FREE_TEXT_SHARE`` of its
   values (``ConfigError``: drop it or set ``column_types``).

The typed form (``typed_series``) is what the modality's ``frame`` returns and ``decode``
writes: ``numeric`` float64, ``integer`` int64 (nullable ``Int64`` with missing cells),
``boolean`` bool (``boolean`` with missing cells), ``datetime`` datetime64[ns], and
``categorical`` a pandas Categorical with the column's categories, except categorical codes
held as numbers (inferred, or set with ``column_types``), which keep their number dtype
(int64 / Int64, or float64 for fractional codes).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import polydiff

KINDS = ("numeric", "integer", "categorical", "boolean", "datetime")
NUMERIC_KINDS = ("numeric", "integer", "datetime")
"""Kinds diffused in the continuous ``"num"`` field (datetimes as float seconds)."""
CATEGORY_KINDS = ("categorical", "boolean")
"""Kinds diffused as one discrete field each."""
FEW_DISTINCT = 5
FREE_TEXT_MIN_DISTINCT = 20
FREE_TEXT_SHARE = 0.5
TRUE_WORDS = frozenset({"true", "t", "yes"})
FALSE_WORDS = frozenset({"false", "f", "no"})
DATE_PATTERN = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
                          r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?\s*$")


@dataclass(frozen=True)
class Column:
    """The description of one column.

    Attributes:
        name: the column name in the table.
        kind: one of ``KINDS``.
        dtype: the pandas dtype of its typed form (``"float64"``, ``"int64"``, ``"Int64"``,
            ``"bool"``, ``"boolean"``, ``"datetime64[ns]"`` or ``"category"``).
        categories: the categories of a ``categorical`` / ``boolean`` column (in their order),
            else ``()``.
        ordered: whether the categories are ordered (a pandas ordered Categorical).
        has_missing: whether any cell of the column is missing.
        min, max: the training split's range (numbers, or Timestamps for datetimes), filled
            when the transform is fitted; None before, and for categorical columns.
    """

    name: str
    kind: str
    dtype: str
    categories: tuple[Any, ...] = ()
    ordered: bool = False
    has_missing: bool = False
    min: Any = None
    max: Any = None


def _fail(source: str, column: str, problem: str) -> polydiff.ConfigError:
    return polydiff.ConfigError(f"table {source}: column {column!r} {problem}")


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _to_numbers(values: pd.Series) -> pd.Series:
    """Text values as numbers (NaN where a value is not a number)."""
    return pd.to_numeric(values.astype(str).str.strip(), errors="coerce")


def _integral(numbers: pd.Series) -> bool:
    finite = numbers.dropna().to_numpy(dtype=np.float64)
    return bool(np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)))


def _looks_like_dates(values: pd.Series) -> bool:
    distinct = values.astype(str).unique()
    return all(DATE_PATTERN.match(v) for v in distinct)


def _parse_dates(values: pd.Series) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(values, errors="coerce")


def _bool_words(values: pd.Series) -> bool:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return True
    words = set(values.astype(str).str.strip().str.lower())
    return bool(words) and words <= TRUE_WORDS | FALSE_WORDS and bool(words & TRUE_WORDS) == bool(words & FALSE_WORDS)


def _number_kind(numbers: pd.Series) -> str:
    if not _integral(numbers):
        return "numeric"
    return "categorical" if numbers.nunique() <= FEW_DISTINCT else "integer"


def _infer_text_kind(values: pd.Series, source: str, name: str) -> str:
    """The kind of a text column from its non-missing values (module docstring, rules 3-7)."""
    if _bool_words(values):
        return "boolean"
    if _looks_like_dates(values) and _parse_dates(values).notna().all():
        return "datetime"
    numbers = _to_numbers(values)
    parsed = int(numbers.notna().sum())
    if parsed == len(values):
        return _number_kind(numbers)
    if parsed >= len(values) / 2:
        words = sorted(set(values[numbers.isna()].astype(str)))[:3]
        raise _fail(source, name, f"mixes numbers and words ({parsed} of {len(values)} values are numbers, "
                                  f"others are e.g. {words}); clean the values, or set column_types "
                                  f"{{{name!r} = \"categorical\"}} to treat every value as a category")
    distinct = values.nunique()
    if distinct > FREE_TEXT_MIN_DISTINCT and distinct > FREE_TEXT_SHARE * len(values):
        raise _fail(source, name, f"looks like free text or an identifier ({distinct} distinct values in "
                                  f"{len(values)} rows), which cannot be typed; drop the column, or set "
                                  f"column_types {{{name!r} = \"categorical\"}} to keep it as categories")
    return "categorical"


def infer_kind(series: pd.Series, source: str = "") -> str:
    """The kind of one column by the rules of the module docstring (rules 1 and 3-7).

    Args:
        series: the column as read.
        source: what to call the table in errors (a file name, a data set).

    Returns:
        One of ``KINDS``.

    Raises:
        polydiff.ConfigError: the column is empty, mixes numbers and words, or looks like free text.
    """
    name = str(series.name)
    values = series.dropna()
    if values.empty:
        raise _fail(source, name, "has no values (every cell is missing); drop it")
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return _number_kind(values.astype(np.float64))
    if _is_text(series):
        return _infer_text_kind(values, source, name)
    raise _fail(source, name, f"has dtype {series.dtype}, which cannot be typed; drop it or set column_types")


def check_column_types(column_types: Mapping[str, str] | None, columns: Sequence[str], source: str) -> dict[str, str]:
    """Validate the ``column_types`` option against a table's columns.

    Returns:
        ``{column: kind}`` (empty without overrides).

    Raises:
        polydiff.ConfigError: not a mapping, an unknown column or an unknown kind (named).
    """
    if column_types is None:
        return {}
    if not isinstance(column_types, Mapping):
        raise polydiff.ConfigError(f"modality 'tabular': column_types = {column_types!r} must be a table "
                                   f"{{column = kind}} with kinds {list(KINDS)}")
    out = {}
    for column, kind in column_types.items():
        if column not in columns:
            raise polydiff.ConfigError(f"modality 'tabular': column_types names column {column!r}, which table "
                                       f"{source} does not have; its columns: {list(columns)}")
        if kind not in KINDS:
            raise polydiff.ConfigError(f"modality 'tabular': column_types[{column!r}] = {kind!r} is not a kind; "
                                       f"allowed: {list(KINDS)}")
        out[str(column)] = str(kind)
    return out


def _sorted_categories(values: pd.Series) -> tuple[Any, ...]:
    distinct = values.dropna().unique().tolist()
    try:
        return tuple(sorted(distinct))
    except TypeError:  # mixed Python types: order by their text
        return tuple(sorted(distinct, key=str))


def _describe(series: pd.Series, kind: str, inferred: bool) -> Column:
    """The Column of ``series`` typed as ``kind`` (before its typed form is built)."""
    name, missing = str(series.name), bool(series.isna().any())
    if kind == "boolean":
        return Column(name, kind, "boolean" if missing else "bool", (False, True), False, missing)
    if kind == "categorical":
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return Column(name, kind, "category", tuple(dtype.categories.tolist()), bool(dtype.ordered), missing)
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            numbers = series.dropna().astype(np.float64)
            if not _integral(numbers):
                return Column(name, kind, "float64", _sorted_categories(numbers), False, missing)
            return Column(name, kind, "Int64" if missing else "int64", _sorted_categories(numbers.astype(np.int64)),
                          False, missing)
        if inferred:
            numbers = _to_numbers(series.dropna())
            if numbers.notna().all():
                return Column(name, kind, "Int64" if missing else "int64",
                              _sorted_categories(numbers.astype(np.int64)), False, missing)
        return Column(name, kind, "category", _sorted_categories(series), False, missing)
    dtypes = {"numeric": "float64", "integer": "Int64" if missing else "int64", "datetime": "datetime64[ns]"}
    return Column(name, kind, dtypes[kind], (), False, missing)


def infer_schema(frame: pd.DataFrame, column_types: Mapping[str, str] | None = None, source: str = "table"
                 ) -> list[Column]:
    """Type every column of ``frame`` (module docstring), with ``column_types`` overriding inference.

    Args:
        frame: the table as read.
        column_types: ``{column: kind}`` overrides.
        source: what to call the table in errors.

    Returns:
        One ``Column`` per column, in table order.

    Raises:
        polydiff.ConfigError: an empty or untypeable column, a bad override, or a categorical
            column with one category and no missing cells (nothing to generate: drop it).
    """
    overrides = check_column_types(column_types, list(frame.columns), source)
    columns = []
    for name in frame.columns:
        series = frame[name]
        if series.dropna().empty:
            raise _fail(source, str(name), "has no values (every cell is missing); drop it")
        kind = overrides.get(str(name)) or infer_kind(series, source)
        column = _describe(series, kind, str(name) not in overrides)
        typed_series(series, column, source)  # every value fits the kind, or a ConfigError names it
        if kind in CATEGORY_KINDS and len(column.categories) + column.has_missing < 2:
            raise _fail(source, str(name), f"has the single value {column.categories[0]!r} and no missing cells: "
                                           "there is nothing to generate; drop it")
        columns.append(column)
    return columns


def _as_booleans(series: pd.Series, column: Column, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean")
    if pd.api.types.is_float_dtype(series.dtype) and series.dropna().isin([0.0, 1.0]).all():
        return series.astype("boolean")

    def word(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return pd.NA
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer, float, np.floating)) and v in (0, 1):
            return bool(v)
        text = str(v).strip().lower()
        if text in TRUE_WORDS | FALSE_WORDS:
            return text in TRUE_WORDS
        raise _fail(source, column.name, f"is typed boolean but holds {v!r}; use true / false (or 1 / 0) values, "
                                         "or set column_types to another kind")
    return pd.Series([word(v) for v in series], index=series.index, name=series.name, dtype="boolean")


def _check_parsed(series: pd.Series, parsed: pd.Series, column: Column, source: str, what: str) -> None:
    """ConfigError naming the first row whose value did not parse (a value in, a missing value out)."""
    bad = (series.notna() & parsed.isna()).to_numpy()
    if bad.any():
        row = int(bad.nonzero()[0][0])
        raise _fail(source, column.name, f"is typed {column.kind} but row {row} (0-based, header not counted) holds "
                                         f"{series.iloc[row]!r}, which is not {what}; clean the values or set "
                                         "column_types to another kind")


def _as_numbers(series: pd.Series, column: Column, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise _fail(source, column.name, f"has dtype {series.dtype} and cannot be typed {column.kind}")
    numbers = pd.to_numeric(series, errors="coerce") if pd.api.types.is_numeric_dtype(series.dtype) \
        else _to_numbers(series.where(series.notna(), "nan"))
    _check_parsed(series, numbers, column, source, "a number")
    return numbers.astype(np.float64)


def _as_integers(series: pd.Series, column: Column, source: str) -> pd.Series:
    numbers = _as_numbers(series, column, source)
    if not _integral(numbers):
        raise _fail(source, column.name, "is typed integer but holds fractional values; set column_types "
                                         f"{{{column.name!r} = \"numeric\"}}")
    return numbers.round().astype("Int64")


def _as_dates(series: pd.Series, column: Column, source: str) -> pd.Series:
    dates = series if pd.api.types.is_datetime64_any_dtype(series.dtype) else _parse_dates(series)
    _check_parsed(series, dates, column, source, "a date")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    return dates.astype("datetime64[ns]")


def _as_categories(series: pd.Series, column: Column, source: str) -> pd.Series:
    if column.dtype == "float64":
        return _as_numbers(series, column, source)
    if column.dtype != "category":
        return _as_integers(series, column, source)
    if isinstance(series.dtype, pd.CategoricalDtype) and tuple(series.dtype.categories) == column.categories:
        return series.astype(pd.CategoricalDtype(list(column.categories), ordered=column.ordered))
    values = series.astype(object).where(series.notna(), None)
    if isinstance(column.categories[0], str):
        values = values.map(lambda v: v if v is None else str(v))
    unknown = values.notna() & ~values.isin(list(column.categories))
    if unknown.any():
        row = unknown.to_numpy().nonzero()[0][0]
        raise _fail(source, column.name, f"row {row} (0-based) holds {series.iloc[row]!r}, which is not one of its "
                                         f"categories {list(column.categories)}")
    dtype = pd.CategoricalDtype(list(column.categories), ordered=column.ordered)
    typed = pd.Series(pd.Categorical(values, dtype=dtype), index=series.index, name=series.name)
    return typed


def typed_series(series: pd.Series, column: Column, source: str = "table") -> pd.Series:
    """The typed form of a column (module docstring), named ``column.name``.

    Raises:
        polydiff.ConfigError: a value that does not fit the column's kind (row and value named).
    """
    convert = {"numeric": _as_numbers, "integer": _as_integers, "boolean": _as_booleans,
               "datetime": _as_dates, "categorical": _as_categories}[column.kind]
    typed = convert(series, column, source)
    if column.kind in ("integer", "boolean") or (column.kind == "categorical" and column.dtype != "category"):
        typed = typed.astype(_nullable(column.dtype) if typed.isna().any() else column.dtype)
    return typed.rename(column.name)


def _nullable(dtype: str) -> str:
    return {"int64": "Int64", "bool": "boolean"}.get(dtype, dtype)


def typed_frame(frame: pd.DataFrame, columns: Sequence[Column], source: str = "table") -> pd.DataFrame:
    """The typed form of every column of ``columns`` present in ``frame``, in ``columns`` order."""
    return pd.DataFrame({c.name: typed_series(frame[c.name], c, source) for c in columns if c.name in frame},
                        index=frame.index)
