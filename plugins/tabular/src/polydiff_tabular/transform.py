"""A table <-> diffusion fields: TabDDPM's encoding (Kotelnikov et al. 2023, section 3) and its inverse.

Fields (the shared contract of the tabular plugin), in this order:

==================  ===============================  =============================================
field               space                            holds
==================  ===============================  =============================================
``"num"``           ``Continuous((n_num,))``, or     every numeric / integer / datetime column
                    ``Bounded((n_num,), 0, 1)``      through a quantile-normal transform
``"c_<col>"``       ``Discrete((1,), K)``            one categorical / boolean column: the index
                                                     of its category; id K - 1 is "missing" when
                                                     the column has missing cells
``"m_<col>"``       ``Discrete((1,), 2)``            whether a numeric cell is missing (1) or not
==================  ===============================  =============================================

Numbers: datetimes become float seconds since 1970; a scikit-learn
``QuantileTransformer(output_distribution="normal")`` fitted on the training split's observed
values maps each column to a standard normal (TabDDPM's preprocessing) with one quantile per
training row, up to ``QUANTILE_ROWS`` (TabDDPM keeps at most 1,000: the inverse then
interpolates linearly across the top and bottom 0.1 % of a large table, writing values
anywhere between the 99.9th percentile and an outlying maximum); a missing cell is
filled with the transformed training median. With ``bounded`` the transformed values are
scaled to [0, 1] by their training min / max (and clipped there), for reflected diffusion.
The inverse clips every column to its training [min, max], rounds integers, rounds other
numbers to the fewest decimals (at most ``MAX_DECIMALS``) that write every training value,
rounds datetimes to whole days (when every training value is a midnight) or seconds, and writes a missing
cell wherever ``"m_<col>"`` says 1. A categorical id outside the column's ids (a mask id left
by a sampler) decodes as a missing cell.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

import polydiff
from polydiff_tabular.schema import CATEGORY_KINDS, NUMERIC_KINDS, Column, typed_series

NUM = "num"
QUANTILE_ROWS = 100_000
"""Most quantiles (and rows subsampled to fit them) of the quantile-normal transform."""
EPOCH = pd.Timestamp("1970-01-01")
DAY_SECONDS = 86400.0
MAX_DECIMALS = 6


def sanitise(name: str) -> str:
    """A column name as a field-name part: lowercase, every character outside [a-z0-9_] as ``_``."""
    return re.sub(r"[^a-z0-9_]", "_", str(name).lower()) or "col"


def field_names(columns: Sequence[str], prefix: str) -> dict[str, str]:
    """``{column: prefix + sanitised name}``, made unique with ``_2``, ``_3``, ... suffixes."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        base = prefix + sanitise(column)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        out[column] = name
    return out


def _seconds(series: pd.Series) -> np.ndarray:
    """A typed column as float64 numbers (datetimes as seconds since 1970), NaN where missing."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return ((series - EPOCH).dt.total_seconds()).to_numpy(dtype=np.float64, na_value=np.nan)
    return series.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _decimals(values: np.ndarray) -> int | None:
    """The fewest decimals (0 .. ``MAX_DECIMALS``) that write every finite value exactly, or None."""
    values = values[np.isfinite(values)]
    tolerance = 1e-9 * max(1.0, float(np.abs(values).max(initial=0)))
    for d in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(values, d), values, rtol=0.0, atol=tolerance):
            return d
    return None


def _date_unit(seconds: np.ndarray) -> float:
    """Seconds per rounding unit of a datetime column: a day when every value is a midnight, else 1."""
    values = seconds[np.isfinite(seconds)]
    return DAY_SECONDS if np.all(np.mod(values, DAY_SECONDS) == 0) else 1.0


class TableTransform:
    """Fitted encoding of a typed table into fields, and its inverse (module docstring).

    Args:
        columns: the table's columns (``polydiff_tabular.schema``), in table order.
        train: the typed training split.
        condition_on: categorical columns that become conditioning fields.
        bounded: scale ``"num"`` to [0, 1] (a ``Bounded`` space).
        seed: the quantile transformer's subsampling seed.

    Attributes:
        columns: ``columns`` with ``min`` / ``max`` of the training split filled in.
        num_columns: the columns of ``"num"``, in order.
        cat_fields, cond_fields, missing_fields: ``{field: column}`` of the categorical,
            conditioning and missingness fields.
        spaces, cond_spaces: ``{field: space}`` in the field order of the contract.

    Raises:
        polydiff.ConfigError: a numeric column with no value in the training split.
    """

    def __init__(self, columns: Sequence[Column], train: pd.DataFrame, condition_on: Sequence[str] = (),
                 bounded: bool = False, seed: int = 0) -> None:
        from sklearn.preprocessing import QuantileTransformer

        self.bounded = bool(bounded)
        by_name = self._by_name = {c.name: c for c in columns}
        self.num_columns = [c.name for c in columns if c.kind in NUMERIC_KINDS]
        cats = [c.name for c in columns if c.kind in CATEGORY_KINDS]
        names = field_names(cats, "c_")
        self.cat_fields = {names[c]: c for c in cats if c not in condition_on}
        self.cond_fields = {names[c]: c for c in cats if c in condition_on}
        missing = [c for c in self.num_columns if by_name[c].has_missing]
        self.missing_fields = {f: c for c, f in field_names(missing, "m_").items()}
        raw = self._raw(train)
        for j, name in enumerate(self.num_columns):
            if not np.isfinite(raw[:, j]).any():
                raise polydiff.ConfigError(f"modality 'tabular': column {name!r} has no value in the training split; "
                                           "raise max_rows, lower validation_fraction, or drop the column")
        self._quantiles = None
        if self.num_columns:
            self._quantiles = QuantileTransformer(output_distribution="normal",
                                                  n_quantiles=min(QUANTILE_ROWS, len(train)),
                                                  subsample=QUANTILE_ROWS, random_state=seed).fit(raw)
            self._fit_numbers(raw)
        self.columns = [self._with_range(c, raw) for c in columns]
        self._by_name = {c.name: c for c in self.columns}
        self.spaces = self._spaces(self.cat_fields, with_num=True)
        self.spaces.update({f: polydiff.Discrete((1,), 2) for f in self.missing_fields})
        self.cond_spaces = self._spaces(self.cond_fields, with_num=False)

    def _fit_numbers(self, raw: np.ndarray) -> None:
        self._low, self._high = np.nanmin(raw, axis=0), np.nanmax(raw, axis=0)
        medians = np.nanmedian(raw, axis=0)
        self._fill = self._quantiles.transform(medians[None, :])[0]
        z = self._normal(raw)
        self._z_low, self._z_high = z.min(axis=0), z.max(axis=0)
        self._z_span = np.where(self._z_high > self._z_low, self._z_high - self._z_low, 1.0)
        self._units = {j: _date_unit(raw[:, j]) for j, c in enumerate(self.num_columns)
                       if self._by_name[c].kind == "datetime"}
        self._decimals = {j: _decimals(raw[:, j]) for j, c in enumerate(self.num_columns)
                          if self._by_name[c].kind == "numeric"}

    def _with_range(self, column: Column, raw: np.ndarray) -> Column:
        if column.kind not in NUMERIC_KINDS:
            return column
        j = self.num_columns.index(column.name)
        low, high = float(self._low[j]), float(self._high[j])
        if column.kind == "datetime":
            return replace(column, min=EPOCH + pd.Timedelta(seconds=low), max=EPOCH + pd.Timedelta(seconds=high))
        if column.kind == "integer":
            return replace(column, min=int(low), max=int(high))
        return replace(column, min=low, max=high)

    def _spaces(self, fields: Mapping[str, str], with_num: bool) -> dict[str, polydiff.Space]:
        spaces: dict[str, polydiff.Space] = {}
        if with_num and self.num_columns:
            n = len(self.num_columns)
            spaces[NUM] = polydiff.Bounded((n,), 0.0, 1.0) if self.bounded else polydiff.Continuous((n,))
        for field, name in fields.items():
            spaces[field] = polydiff.Discrete((1,), self.vocab_size(name))
        return spaces

    def vocab_size(self, column: str) -> int:
        """K of a categorical column: its categories, plus one id for missing when it has missing cells."""
        c = self._by_name[column]
        return len(c.categories) + int(c.has_missing)

    # -- numbers -----------------------------------------------------------------------------

    def _raw(self, frame: pd.DataFrame) -> np.ndarray:
        """``(N, n_num)`` float64 of the numeric columns (datetimes in seconds), NaN where missing."""
        if not self.num_columns:
            return np.zeros((len(frame), 0))
        return np.stack([_seconds(frame[c]) for c in self.num_columns], axis=1)

    def _normal(self, raw: np.ndarray) -> np.ndarray:
        """Quantile-normal scores with missing cells filled by the transformed median."""
        z = self._quantiles.transform(raw)
        return np.where(np.isnan(z), self._fill[None, :], z)

    def encode_numbers(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The ``"num"`` values ``(N, n_num)`` float32 of a typed frame and its observed mask (1 = observed)."""
        raw = self._raw(frame)
        z = self._normal(raw)
        if self.bounded:
            z = np.clip((z - self._z_low) / self._z_span, 0.0, 1.0)
        return z.astype(np.float32), np.isfinite(raw).astype(np.float32)

    def decode_numbers(self, z: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode_numbers` for ``(N, n_num)`` values: raw numbers clipped to the
        training range, integers and datetimes rounded (no missing cells yet)."""
        z = np.asarray(z, dtype=np.float64)
        if self.bounded:
            z = np.clip(z, 0.0, 1.0) * self._z_span + self._z_low
        raw = np.clip(self._quantiles.inverse_transform(z), self._low, self._high)
        for j, name in enumerate(self.num_columns):
            kind = self._by_name[name].kind
            if kind == "integer":
                raw[:, j] = np.round(raw[:, j])
            elif kind == "datetime":
                raw[:, j] = np.round(raw[:, j] / self._units[j]) * self._units[j]
            elif self._decimals[j] is not None:
                raw[:, j] = np.round(raw[:, j], self._decimals[j])
        return raw

    # -- categories --------------------------------------------------------------------------

    def category_ids(self, series: pd.Series, column: Column) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(N,)`` int64 of a typed categorical column (missing -> the missing id, or 0 when the
        column has none) and its observed mask.

        Raises:
            polydiff.ConfigError: a value that is not one of the column's categories (named).
        """
        lookup = {v: i for i, v in enumerate(column.categories)}
        values = series.astype(object).to_numpy()
        observed = series.notna().to_numpy()
        ids = np.full(len(values), len(column.categories) if column.has_missing else 0, dtype=np.int64)
        for row in np.nonzero(observed)[0]:
            key = values[row]
            if key not in lookup:
                raise polydiff.ConfigError(f"modality 'tabular': column {column.name!r} row {row} holds {key!r}, "
                                           f"which is not one of its categories {list(column.categories)}")
            ids[row] = lookup[key]
        return ids, observed.astype(np.float32)

    def decode_categories(self, ids: np.ndarray, column: Column) -> pd.Series:
        """The typed column of ids ``(N,)``; the missing id and ids outside the column decode as missing."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        codes = np.where((ids >= 0) & (ids < len(column.categories)), ids, -1)
        if column.dtype == "category":
            dtype = pd.CategoricalDtype(list(column.categories), ordered=column.ordered)
            return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), name=column.name)
        table = np.array([float(v) for v in column.categories] + [np.nan])
        return pd.Series(table[codes], name=column.name)

    # -- whole tables ------------------------------------------------------------------------

    def encode(self, frame: pd.DataFrame, conditions: bool = False) -> dict[str, np.ndarray]:
        """Fields of a typed frame: ``"num"`` ``(N, n_num)`` float32, categorical ``(N, 1)`` int64,
        and the conditioning fields too with ``conditions``.

        Raises:
            polydiff.ConfigError: a column of a requested field is not in ``frame`` (named).
        """
        need = [*self.num_columns, *self.cat_fields.values(), *(self.cond_fields.values() if conditions else ())]
        absent = [c for c in need if c not in frame.columns]
        if absent:
            raise polydiff.ConfigError(f"modality 'tabular': the table to encode lacks columns {absent}; "
                                       f"it needs {need}")
        out: dict[str, np.ndarray] = {}
        if self.num_columns:
            out[NUM] = self.encode_numbers(frame)[0]
        fields = {**self.cat_fields, **(self.cond_fields if conditions else {})}
        for field, name in fields.items():
            out[field] = self.category_ids(frame[name], self._by_name[name])[0][:, None]
        for field, name in self.missing_fields.items():
            out[field] = frame[name].isna().to_numpy().astype(np.int64)[:, None]
        return out

    def decode(self, fields: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """The typed frame of a batch of fields, in table column order; the columns of fields
        absent from ``fields`` are left out."""
        n = len(next(iter(fields.values())))
        parts: dict[str, pd.Series] = {}
        if NUM in fields and self.num_columns:
            raw = self.decode_numbers(np.asarray(fields[NUM]).reshape(n, -1))
            for field, name in self.missing_fields.items():
                if field in fields:
                    raw[np.asarray(fields[field]).reshape(n) == 1, self.num_columns.index(name)] = np.nan
            for j, name in enumerate(self.num_columns):
                parts[name] = self._number_series(raw[:, j], self._by_name[name])
        for field, name in {**self.cat_fields, **self.cond_fields}.items():
            if field in fields:
                parts[name] = self.decode_categories(np.asarray(fields[field]), self._by_name[name])
        out = {c.name: typed_series(parts[c.name], c) for c in self.columns if c.name in parts}
        return pd.DataFrame(out, index=pd.RangeIndex(n))

    @staticmethod
    def _number_series(values: np.ndarray, column: Column) -> pd.Series:
        if column.kind == "datetime":
            seconds = pd.Series(values, name=column.name)
            return (EPOCH + pd.to_timedelta(seconds, unit="s")).rename(column.name)
        return pd.Series(values, name=column.name)

    def known(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Known values and masks (1 where observed) per diffused field of a typed frame whose
        missing cells are to be imputed; columns absent from ``frame`` are wholly unknown.

        Missingness fields are known to be 0 (present) everywhere, so every imputed numeric
        cell gets a value.
        """
        n = len(frame)
        known: dict[str, np.ndarray] = {}
        mask: dict[str, np.ndarray] = {}
        if self.num_columns:
            full = frame.reindex(columns=self.num_columns)
            for name in self.num_columns:
                if name not in frame.columns:
                    full[name] = pd.Series([pd.NA] * n, dtype=self._by_name[name].dtype, index=frame.index)
            z, observed = self.encode_numbers(full)
            known[NUM], mask[NUM] = np.where(observed > 0, z, 0.0).astype(np.float32), observed
        for field, name in self.cat_fields.items():
            if name in frame.columns:
                ids, observed = self.category_ids(frame[name], self._by_name[name])
            else:
                ids, observed = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float32)
            known[field], mask[field] = np.where(observed > 0, ids, 0)[:, None], observed[:, None]
        for field in self.missing_fields:
            known[field], mask[field] = np.zeros((n, 1), dtype=np.int64), np.ones((n, 1), dtype=np.float32)
        return known, mask
