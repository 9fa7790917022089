"""Tabular sample-quality metrics, following the definitions SDMetrics publishes
(https://docs.sdv.dev/sdmetrics), written with scipy and scikit-learn (SDMetrics itself
is not a dependency: its ``copulas`` dependency is under the Business Source License).

Every metric has the core signature ``fn(samples, reference, *, spaces, generator=None,
modality=None) -> list[row]``: the samples and the reference (the validation split) are
States, decoded into tables by ``modality.decode``; ``modality.frame("train")`` is the
real training table where a metric needs it. Rows are ``{"metric": name, "value": float,
...}``: the overall score under the metric's own name, and per column or pair under the
name of the SDMetrics metric computed there, with keys ``"column"`` (and ``"column_2"``).

=========================  ===============================================  ========
metric (rows)              definition                                       best
=========================  ===============================================  ========
column_shapes              mean over columns of KSComplement (numeric,      1
 (ks_complement,           datetime: 1 - Kolmogorov-Smirnov statistic) and
 tv_complement)            TVComplement (categorical, boolean: 1 - total
                           variation distance of the category frequencies)
column_pair_trends         mean over pairs of CorrelationSimilarity         1
 (correlation_similarity,  (numeric pairs: 1 - abs(r_real - r_syn) / 2,
 contingency_similarity)   Pearson r) and ContingencySimilarity (other
                           pairs: 1 - TVD of the normalised two-way table,
                           numbers in 10 bins of the real column)
detection                  ROC AUC of a logistic regression telling real    0.5
 (detection_score)         from synthetic rows, stratified 3-fold CV;       (1)
                           SDMetrics' score 1 - (2 max(AUC, 0.5) - 1)
ml_efficiency              gradient boosting of ``modality.target`` fitted  the real
                           on the synthetic rows, scored on the real        score
                           validation rows (macro F1 or R^2), beside the
                           same model fitted on the real training rows
dcr                        median distance of synthetic rows to their       about 1
                           closest training row over that of the real
                           validation rows (SDMetrics' DCR distance)
=========================  ===============================================  ========

Column kinds are the modality's (``modality.columns``: numeric and integer columns are
numeric, categorical and boolean ones categorical); every ``*_frames`` function takes them
as ``kinds`` and otherwise reads them from the dtypes (``column_kind``). Missing cells are
left out of the numeric statistics (KS, Pearson) and are a category of their own
everywhere else, as in SDMetrics. Only columns present in both tables are compared (conditioning columns are
absent from the diffused samples).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import polydiff

MODALITY = "tabular"
NUMERIC, DATETIME, CATEGORICAL = "numeric", "datetime", "categorical"
MISSING = "<missing>"
"""The category label of a missing cell in the categorical statistics."""
N_BINS = 10
"""ContingencySimilarity's bins for a numeric column (SDMetrics' ``num_discrete_bins`` default)."""
CV_FOLDS = 3
DCR_MAX_ROWS = 2000
"""DCR compares at most this many synthetic and this many holdout rows (a seeded subsample)
with every training row, as SDMetrics' ``num_rows_subsample``."""
DCR_QUANTILE = 0.05
DCR_CHUNK_CELLS = 4_000_000
"""Distances are computed for blocks of query rows of at most this many (query, train) pairs."""
MAX_CATEGORIES_NATIVE = 255
"""A categorical feature of more categories is passed to gradient boosting as its ordinal code."""
KIT_MODALITY = {"max_rows": 120}
"""Modality options of the conformance kit's metric checks: a small penguins table."""

Row = dict[str, Any]


def _row(metric: str, value: float, **extra: Any) -> Row:
    return {"metric": metric, "value": float(value), **extra}


# ---------------------------------------------------------------------------
# Column kinds and values
# ---------------------------------------------------------------------------

def column_kind(series: pd.Series) -> str:
    """``"numeric"``, ``"datetime"`` or ``"categorical"`` from the dtype of a decoded column
    (bool / boolean, Categorical, object and string columns are categorical)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DATETIME
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC
    return CATEGORICAL


KIND_OF = {"numeric": NUMERIC, "integer": NUMERIC, "datetime": DATETIME, "categorical": CATEGORICAL,
           "boolean": CATEGORICAL}
"""The modality's column kinds -> the three kinds the metrics tell apart."""

Kinds = Mapping[str, str] | None


def resolve_kinds(frame: pd.DataFrame, columns: list[str], kinds: Kinds = None) -> dict[str, str]:
    """``{column: kind}`` for ``columns``: the given kind (any of ``KIND_OF``) where there is
    one, else ``column_kind`` of the column of ``frame``.

    Raises:
        ValueError: a given kind that is not one of ``KIND_OF``.
    """
    out = {}
    for c in columns:
        given = (kinds or {}).get(c)
        if given is not None and given not in KIND_OF:
            raise ValueError(f"tabular metrics: column {c!r} has kind {given!r}; kinds are {sorted(KIND_OF)}")
        out[c] = KIND_OF[given] if given is not None else column_kind(frame[c])
    return out


def modality_kinds(modality: Any) -> dict[str, str]:
    """``{column: kind}`` from ``modality.columns`` (objects with ``name`` and ``kind``); {} without it."""
    return {c.name: c.kind for c in getattr(modality, "columns", None) or [] if hasattr(c, "kind")}


def numeric_values(series: pd.Series) -> np.ndarray:
    """A numeric or datetime column as float64 (datetimes in nanoseconds), NaN where missing."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert(None)
        stamps = series.astype("datetime64[ns]").to_numpy()
        out = stamps.astype("int64").astype(np.float64)
        out[np.isnat(stamps)] = np.nan
        return out
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def category_labels(series: pd.Series) -> np.ndarray:
    """A column as an object array of strings, ``MISSING`` where the cell is missing."""
    labels = series.astype(object).map(str).to_numpy(dtype=object)
    labels[series.isna().to_numpy()] = MISSING
    return labels


def shared_columns(real: pd.DataFrame, synthetic: pd.DataFrame) -> list[str]:
    """The columns of ``real`` that ``synthetic`` also has, in ``real``'s order."""
    return [c for c in real.columns if c in synthetic.columns]


def _frequencies(labels: np.ndarray) -> pd.Series:
    return pd.Series(labels).value_counts(normalize=True)


def total_variation(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Total variation distance ``1/2 sum_k |p_real(k) - p_syn(k)|`` of two arrays of hashable labels."""
    p, q = _frequencies(real).align(_frequencies(synthetic), fill_value=0.0)
    return 0.5 * float((p - q).abs().sum())


# ---------------------------------------------------------------------------
# Column shapes (SDMetrics: KSComplement, TVComplement)
# ---------------------------------------------------------------------------

def ks_complement(real: pd.Series, synthetic: pd.Series) -> float | None:
    """KSComplement: ``1 - sup_x |F_real(x) - F_syn(x)|`` over the present values of a numeric
    or datetime column (two-sample Kolmogorov-Smirnov statistic, ``scipy.stats.ks_2samp``);
    0 when only one side has values, None when neither has."""
    a, b = numeric_values(real), numeric_values(synthetic)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return None if not len(a) and not len(b) else 0.0
    return 1.0 - float(stats.ks_2samp(a, b).statistic)


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """TVComplement: ``1 - TVD`` of the category frequencies of a column (missing = a category)."""
    return 1.0 - total_variation(category_labels(real), category_labels(synthetic))


def column_shapes_frames(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: Kinds = None) -> list[Row]:
    """Column shapes of two tables: KSComplement or TVComplement per shared column (by its
    kind, see ``resolve_kinds``), and their mean, as in SDMetrics' quality report.

    Returns:
        The ``column_shapes`` row (``columns`` = how many were scored), then one
        ``ks_complement`` / ``tv_complement`` row per column with key ``column``.
    """
    rows = []
    columns = shared_columns(real, synthetic)
    kinds = resolve_kinds(real, columns, kinds)
    for column in columns:
        if kinds[column] == CATEGORICAL:
            name, score = "tv_complement", tv_complement(real[column], synthetic[column])
        else:
            name, score = "ks_complement", ks_complement(real[column], synthetic[column])
        if score is not None:
            rows.append(_row(name, score, column=column))
    if not rows:
        return []
    return [_row("column_shapes", np.mean([r["value"] for r in rows]), columns=len(rows)), *rows]


# ---------------------------------------------------------------------------
# Column pair trends (SDMetrics: CorrelationSimilarity, ContingencySimilarity)
# ---------------------------------------------------------------------------

def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def correlation_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> float | None:
    """CorrelationSimilarity of a pair of numeric / datetime columns (the two columns of each
    table): ``1 - |r_real - r_syn| / 2`` with Pearson's r over the rows where both are present;
    None when a correlation is undefined (fewer than 2 rows, or a constant column)."""
    r_real = _pearson(*(numeric_values(real[c]) for c in real.columns))
    r_syn = _pearson(*(numeric_values(synthetic[c]) for c in real.columns))
    if r_real is None or r_syn is None:
        return None
    return 1.0 - abs(r_real - r_syn) / 2.0


def binned_labels(real: pd.Series, synthetic: pd.Series, bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """A numeric / datetime column of both tables as bin labels: ``bins`` equal-width bins
    between the real column's min and max (values outside fall in the end bins), ``MISSING``
    for missing cells."""
    a, b = numeric_values(real), numeric_values(synthetic)
    present = a[~np.isnan(a)]
    edges = np.histogram_bin_edges(present, bins=bins) if len(present) else np.zeros(2)

    def label(values: np.ndarray) -> np.ndarray:
        out = np.digitize(values, edges[1:-1]).astype(str).astype(object)
        out[np.isnan(values)] = MISSING
        return out

    return label(a), label(b)


def _pair_labels(real: pd.Series, synthetic: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == CATEGORICAL:
        return category_labels(real), category_labels(synthetic)
    return binned_labels(real, synthetic)


def contingency_similarity(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: Kinds = None) -> float:
    """ContingencySimilarity of a pair of columns (the two columns of each table):
    ``1 - TVD`` of the normalised two-way tables of (A, B) categories, numeric / datetime
    columns first cut into ``N_BINS`` bins of the real column (``binned_labels``)."""
    kinds = resolve_kinds(real, list(real.columns), kinds)
    (a_real, a_syn), (b_real, b_syn) = (_pair_labels(real[c], synthetic[c], kinds[c]) for c in real.columns)
    return 1.0 - total_variation(_joint(a_real, b_real), _joint(a_syn, b_syn))


def _joint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cell labels ``(a_i, b_i)`` of a two-way table, as hashable tuples."""
    out = np.empty(len(a), dtype=object)
    out[:] = list(zip(a, b))
    return out


def column_pair_trends_frames(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: Kinds = None) -> list[Row]:
    """Column pair trends of two tables: CorrelationSimilarity for each pair of numeric /
    datetime columns, ContingencySimilarity for every other pair, and their mean (SDMetrics'
    quality report; a pair whose correlation is undefined is left out).

    Returns:
        The ``column_pair_trends`` row (``pairs`` = how many were scored), then one
        ``correlation_similarity`` / ``contingency_similarity`` row per pair with keys
        ``column`` and ``column_2``; no rows with fewer than two shared columns.
    """
    rows = []
    columns = shared_columns(real, synthetic)
    kinds = resolve_kinds(real, columns, kinds)
    for a, b in combinations(columns, 2):
        if kinds[a] != CATEGORICAL and kinds[b] != CATEGORICAL:
            name, score = "correlation_similarity", correlation_similarity(real[[a, b]], synthetic[[a, b]])
        else:
            name, score = "contingency_similarity", contingency_similarity(real[[a, b]], synthetic[[a, b]], kinds)
        if score is not None:
            rows.append(_row(name, score, column=a, column_2=b))
    if not rows:
        return []
    return [_row("column_pair_trends", np.mean([r["value"] for r in rows]), pairs=len(rows)), *rows]


# ---------------------------------------------------------------------------
# Features for the scikit-learn models
# ---------------------------------------------------------------------------

def feature_frame(frame: pd.DataFrame, columns: list[str], kinds: Mapping[str, str]) -> pd.DataFrame:
    """``columns`` of ``frame`` as model inputs: numeric / datetime columns as float64 (NaN
    where missing), categorical ones as strings (``MISSING`` where missing)."""
    return pd.DataFrame({c: (category_labels(frame[c]) if kinds[c] == CATEGORICAL else numeric_values(frame[c]))
                         for c in columns}, index=range(len(frame)))


# ---------------------------------------------------------------------------
# Detection (SDMetrics: LogisticDetection)
# ---------------------------------------------------------------------------

def _detector(numeric: list[str], categorical: list[str]) -> Any:
    """Standardised numbers (median-imputed, with missing indicators) and one-hot categories
    into a logistic regression."""
    numbers = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    features = ColumnTransformer([("numeric", numbers, numeric),
                                  ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)])
    return make_pipeline(features, LogisticRegression(max_iter=1000))


def detection_frames(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int = 0, kinds: Kinds = None) -> list[Row]:
    """How well a logistic regression tells real from synthetic rows (SDMetrics' LogisticDetection).

    The rows of both tables (shared columns) are labelled 0 (real) and 1 (synthetic) and
    split into ``CV_FOLDS`` stratified folds (shuffled with ``seed``); a model fitted on the
    other folds scores each fold's rows, and the ROC AUC is averaged over the folds.

    Returns:
        ``detection``: the mean AUC (0.5: indistinguishable, lower is better), and
        ``detection_score``: SDMetrics' score, the mean over folds of
        ``1 - (2 max(AUC, 0.5) - 1)`` (1: indistinguishable, 0: separable).

    Raises:
        ValueError: fewer than ``CV_FOLDS`` rows in either table.
    """
    if min(len(real), len(synthetic)) < CV_FOLDS:
        raise ValueError(f"detection: needs at least {CV_FOLDS} real and {CV_FOLDS} synthetic rows, got "
                         f"{len(real)} and {len(synthetic)}")
    columns = shared_columns(real, synthetic)
    kinds = resolve_kinds(real, columns, kinds)
    x = pd.concat([feature_frame(real, columns, kinds), feature_frame(synthetic, columns, kinds)], ignore_index=True)
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    numeric = [c for c in columns if kinds[c] != CATEGORICAL]
    categorical = [c for c in columns if kinds[c] == CATEGORICAL]
    aucs = []
    for fit, test in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(x, y):
        model = _detector(numeric, categorical).fit(x.iloc[fit], y[fit])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1]))
    scores = [1.0 - (2.0 * max(auc, 0.5) - 1.0) for auc in aucs]
    return [_row("detection", np.mean(aucs), folds=CV_FOLDS, rows_real=len(real), rows_synthetic=len(synthetic)),
            _row("detection_score", np.mean(scores), folds=CV_FOLDS)]


# ---------------------------------------------------------------------------
# Machine-learning efficiency
# ---------------------------------------------------------------------------

def _codes(frames: list[pd.DataFrame], column: str) -> list[np.ndarray]:
    """One categorical column of several feature frames as shared integer codes (NaN where missing)."""
    labels = [f[column].to_numpy(dtype=object) for f in frames]
    vocabulary = {v: i for i, v in enumerate(sorted({v for a in labels for v in a if v != MISSING}))}
    return [np.array([vocabulary.get(v, np.nan) for v in a], dtype=np.float64) for a in labels]


def _design(frames: list[pd.DataFrame], kinds: Mapping[str, str]) -> tuple[list[np.ndarray], list[bool]]:
    """Feature frames -> numeric matrices (categories as codes) and the categorical-feature mask."""
    columns = list(frames[0].columns)
    parts: list[list[np.ndarray]] = [[] for _ in frames]
    mask = []
    for c in columns:
        if kinds[c] == CATEGORICAL:
            values = _codes(frames, c)
            mask.append(int(np.nanmax(np.r_[-1.0, *values])) + 1 <= MAX_CATEGORIES_NATIVE)
        else:
            values = [f[c].to_numpy(dtype=np.float64) for f in frames]
            mask.append(False)
        for part, v in zip(parts, values):
            part.append(v)
    return [np.column_stack(p) if p else np.zeros((len(f), 0)) for p, f in zip(parts, frames)], mask


def _fit_score(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, mask: list[bool], *,
               classify: bool, seed: int) -> dict[str, float]:
    """Fit seeded histogram gradient boosting (a constant predictor for a single class) and score it."""
    categorical = mask if any(mask) else None
    if not classify:
        model = HistGradientBoostingRegressor(random_state=seed, categorical_features=categorical)
        return {"r2": r2_score(y_test, model.fit(x_fit, y_fit).predict(x_test))}
    if len(np.unique(y_fit)) < 2:
        model = DummyClassifier(strategy="most_frequent")
    else:
        model = HistGradientBoostingClassifier(random_state=seed, categorical_features=categorical)
    predicted = model.fit(x_fit, y_fit).predict(x_test)
    return {"macro_f1": f1_score(y_test, predicted, average="macro"), "accuracy": accuracy_score(y_test, predicted)}


def _target_values(frame: pd.DataFrame, target: str, classify: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows whose target is present, and the target as labels (classification) or floats."""
    rows = frame[frame[target].notna().to_numpy()]
    y = category_labels(rows[target]) if classify else numeric_values(rows[target])
    return rows, y


def ml_efficiency_frames(synthetic: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, target: str,
                         seed: int = 0, kinds: Kinds = None) -> list[Row]:
    """Machine-learning efficiency ("train on synthetic, test on real", TabDDPM Sec. 4 and
    SDMetrics' ML efficacy): histogram gradient boosting (scikit-learn, seeded) predicts
    ``target`` from the other shared columns, fitted once on the synthetic rows and once on
    the real training rows, both scored on the real test rows (rows with a missing target
    are dropped). A categorical / boolean target is a classification (macro F1, accuracy),
    a numeric one a regression (R^2).

    Returns:
        One ``ml_efficiency`` row: value = the synthetic-trained score, ``real`` = the
        real-trained one, ``ratio`` = value / real, ``statistic`` (``"macro_f1"`` or
        ``"r2"``), ``target``; classification adds ``accuracy`` and ``real_accuracy``.

    Raises:
        ValueError: ``target`` is not a column of all three tables, or a table has no row
            with the target present.
    """
    for name, frame in (("synthetic", synthetic), ("train", train), ("test", test)):
        if target not in frame.columns:
            raise ValueError(f"ml_efficiency: target column {target!r} is not in the {name} table "
                             f"(columns {list(frame.columns)})")
    features = [c for c in shared_columns(test, synthetic) if c != target and c in train.columns]
    kinds = resolve_kinds(train, [*features, target], kinds)
    classify = kinds[target] == CATEGORICAL
    parts = [_target_values(f, target, classify) for f in (synthetic, train, test)]
    for (rows, _), name in zip(parts, ("synthetic", "train", "test")):
        if not len(rows):
            raise ValueError(f"ml_efficiency: the {name} table has no row with target {target!r} present")
    (x_syn, x_real, x_test), mask = _design([feature_frame(rows, features, kinds) for rows, _ in parts], kinds)
    (_, y_syn), (_, y_real), (_, y_test) = parts
    syn = _fit_score(x_syn, y_syn, x_test, y_test, mask, classify=classify, seed=seed)
    real = _fit_score(x_real, y_real, x_test, y_test, mask, classify=classify, seed=seed)
    statistic = "macro_f1" if classify else "r2"
    value, reference = syn[statistic], real[statistic]
    extra = {"accuracy": syn["accuracy"], "real_accuracy": real["accuracy"]} if classify else {}
    return [_row("ml_efficiency", value, real=float(reference), ratio=value / reference if reference else float("nan"),
                 statistic=statistic, target=target, model="HistGradientBoosting", **extra)]


# ---------------------------------------------------------------------------
# Distance to closest record (SDMetrics' DCR distance)
# ---------------------------------------------------------------------------

class RecordDistance:
    """SDMetrics' DCR distance between rows: the mean over columns of a per-column distance,
    ``|a - b| / (max - min of the training column)`` for numeric / datetime columns and
    0 / 1 (equal / different) for categorical ones; a missing cell is 0 from a missing cell
    and 1 from a present one.

    Args:
        train: the real training table (the records searched); columns: those compared.
        kinds: column kinds (see ``resolve_kinds``).
    """

    def __init__(self, train: pd.DataFrame, columns: list[str], kinds: Kinds = None) -> None:
        self.columns = columns
        self.kinds = resolve_kinds(train, columns, kinds)
        self.ranges: dict[str, float] = {}
        self.codes: dict[str, dict[str, int]] = {}
        for c in columns:
            if self.kinds[c] != CATEGORICAL:
                v = numeric_values(train[c])
                span = np.nanmax(v) - np.nanmin(v) if np.isfinite(v).any() else 0.0
                self.ranges[c] = float(span) if span > 0 else 1.0
            else:
                self.codes[c] = {label: i for i, label in enumerate(pd.unique(category_labels(train[c])))}
        self.train = self.values(train)

    def values(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per column, float32: scaled numbers (NaN where missing), or category codes of the
        training categories (-1 for a category the training rows lack; missing = a category)."""
        out = {}
        for c in self.columns:
            if self.kinds[c] != CATEGORICAL:
                out[c] = (numeric_values(frame[c]) / self.ranges[c]).astype(np.float32)
            else:
                out[c] = np.array([self.codes[c].get(v, -1) for v in category_labels(frame[c])], dtype=np.float32)
        return out

    def _block(self, query: dict[str, np.ndarray], start: int, stop: int) -> np.ndarray:
        total = np.zeros((stop - start, len(next(iter(self.train.values())))), dtype=np.float32)
        for c in self.columns:
            a, b = query[c][start:stop, None], self.train[c][None, :]
            if self.kinds[c] == CATEGORICAL:
                total += a != b
            elif np.isnan(a).any() or np.isnan(b).any():
                missing_a, missing_b = np.isnan(a), np.isnan(b)
                total += np.where(missing_a | missing_b, missing_a != missing_b, np.abs(a - b))
            else:
                total += np.abs(a - b)
        return total

    def nearest(self, frame: pd.DataFrame) -> np.ndarray:
        """For each row of ``frame``, the distance to its closest training row ``(len(frame),)``."""
        query = self.values(frame)
        n_train = len(next(iter(self.train.values())))
        chunk = max(1, DCR_CHUNK_CELLS // max(n_train, 1))
        out = np.empty(len(frame))
        for start in range(0, len(frame), chunk):
            stop = min(start + chunk, len(frame))
            out[start:stop] = self._block(query, start, stop).min(axis=1).astype(np.float64) / len(self.columns)
        return out


def _subsample(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= DCR_MAX_ROWS:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), DCR_MAX_ROWS, replace=False))]


def dcr_frames(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, seed: int = 0,
               kinds: Kinds = None) -> list[Row]:
    """Distance to closest record, synthetic rows against a real holdout as the baseline.

    For each synthetic row the ``RecordDistance`` to its closest real training row, and for
    each real holdout row (the validation split, never trained on) the same; a model that
    generalises puts its rows about as far from the training rows as new real rows are,
    one that copies puts them at 0. At most ``DCR_MAX_ROWS`` synthetic and holdout rows
    are used (a subsample seeded by ``seed``).

    Returns:
        One ``dcr`` row: value = median synthetic DCR / median holdout DCR (about 1 is fine,
        near 0 means copying; NaN when the holdout median is 0), ``median_synthetic``,
        ``median_holdout``, ``close_share`` (synthetic rows closer than the holdout's
        ``DCR_QUANTILE`` quantile) and ``exact_copies`` (share at distance 0).

    Raises:
        ValueError: an empty table, or no column shared by all three.
    """
    columns = [c for c in shared_columns(train, synthetic) if c in holdout.columns]
    if not columns or not min(len(synthetic), len(train), len(holdout)):
        raise ValueError(f"dcr: needs rows in every table and shared columns; got {len(synthetic)} synthetic, "
                         f"{len(train)} training and {len(holdout)} holdout rows, shared columns {columns}")
    rng = np.random.default_rng(seed)
    distance = RecordDistance(train, columns, kinds)
    syn = distance.nearest(_subsample(synthetic, rng))
    base = distance.nearest(_subsample(holdout, rng))
    median_syn, median_base = float(np.median(syn)), float(np.median(base))
    threshold = float(np.quantile(base, DCR_QUANTILE))
    value = median_syn / median_base if median_base > 0 else float("nan")
    return [_row("dcr", value, median_synthetic=median_syn, median_holdout=median_base,
                 close_share=float(np.mean(syn < threshold)), exact_copies=float(np.mean(syn == 0)))]


# ---------------------------------------------------------------------------
# The metrics on States
# ---------------------------------------------------------------------------

def seed_from(generator: torch.Generator | None) -> int:
    """A seed for scikit-learn drawn from ``generator`` (0 without one)."""
    return 0 if generator is None else int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def decoded(samples: polydiff.State, reference: polydiff.State, modality: Any, metric: str
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(synthetic table, real reference table)``: both States through ``modality.decode``.

    Raises:
        ValueError: no modality was given.
    """
    if modality is None or not hasattr(modality, "decode"):
        raise ValueError(f"metric {metric!r}: needs the tabular modality to decode States into tables "
                         f"(Experiment.evaluate passes it as modality=)")
    return modality.decode(samples), modality.decode(reference)


def column_shapes(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                  generator: torch.Generator | None = None, modality: Any = None) -> list[Row]:
    """Column shapes of the samples against the reference (``column_shapes_frames``)."""
    synthetic, real = decoded(samples, reference, modality, "column_shapes")
    return column_shapes_frames(real, synthetic, modality_kinds(modality))


def column_pair_trends(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                       generator: torch.Generator | None = None, modality: Any = None) -> list[Row]:
    """Column pair trends of the samples against the reference (``column_pair_trends_frames``)."""
    synthetic, real = decoded(samples, reference, modality, "column_pair_trends")
    return column_pair_trends_frames(real, synthetic, modality_kinds(modality))


def detection(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
              generator: torch.Generator | None = None, modality: Any = None) -> list[Row]:
    """Logistic detection of the samples among the reference rows (``detection_frames``),
    folds shuffled with a seed drawn from ``generator``."""
    synthetic, real = decoded(samples, reference, modality, "detection")
    return detection_frames(real, synthetic, seed_from(generator), modality_kinds(modality))


def ml_efficiency(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                  generator: torch.Generator | None = None, modality: Any = None) -> list[Row]:
    """ML efficiency for ``modality.target`` (``ml_efficiency_frames``): trained on the samples
    and on ``modality.frame("train")``, tested on the reference.

    Returns no rows, with a warning, when the modality has no target or the target is not
    among the sampled columns (a conditioning column).
    """
    synthetic, real = decoded(samples, reference, modality, "ml_efficiency")
    target = getattr(modality, "target", None)
    if target is None or target not in synthetic.columns or target not in real.columns:
        warnings.warn(f"ml_efficiency: no rows: the modality's target {target!r} is "
                      f"{'unset (modality option target)' if target is None else 'not among the sampled columns'}",
                      stacklevel=2)
        return []
    return ml_efficiency_frames(synthetic, modality.frame("train"), real, target, seed_from(generator),
                                modality_kinds(modality))


def dcr(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
        generator: torch.Generator | None = None, modality: Any = None) -> list[Row]:
    """Distance to closest record of the samples, the reference rows as the holdout baseline,
    against ``modality.frame("train")`` (``dcr_frames``)."""
    synthetic, real = decoded(samples, reference, modality, "dcr")
    return dcr_frames(synthetic, modality.frame("train"), real, seed_from(generator), modality_kinds(modality))


def metric_specs() -> Iterator[polydiff.MetricSpec]:
    """The five tabular metric specs, each restricted to the ``tabular`` modality."""
    tabular = frozenset({MODALITY})
    kit = KIT_MODALITY
    yield polydiff.MetricSpec(name="column_shapes", summary="mean KSComplement / TVComplement over columns "
                              "(SDMetrics' definitions)", function=column_shapes, modalities=tabular,
                              higher_is_better=True, kit_options=kit)
    yield polydiff.MetricSpec(name="column_pair_trends", summary="mean CorrelationSimilarity / ContingencySimilarity "
                              "over column pairs (SDMetrics' definitions)", function=column_pair_trends,
                              modalities=tabular, higher_is_better=True, kit_options=kit)
    yield polydiff.MetricSpec(name="detection", summary="ROC AUC of a logistic regression telling real from "
                              "synthetic rows, 3-fold CV (0.5 ideal)", function=detection, modalities=tabular,
                              higher_is_better=False, kit_options=kit)
    yield polydiff.MetricSpec(name="ml_efficiency", summary="score on real validation rows of a gradient-boosting "
                              "model of the target trained on synthetic rows, beside real-trained",
                              function=ml_efficiency, modalities=tabular, higher_is_better=True, kit_options=kit)
    yield polydiff.MetricSpec(name="dcr", summary="median distance to the closest training row, synthetic over "
                              "real holdout (privacy; near 0 means copying)", function=dcr, modalities=tabular,
                              higher_is_better=True, kit_options=kit)
