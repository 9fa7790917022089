"""The tabular metrics on tables of known relations: a table scores perfectly against
itself, an independent draw of the same law scores near the ideal, and shifting a column,
breaking a dependence, or copying the training rows scores as each metric says it should.

``draw(n, seed)`` is a small mixed table: ``x`` normal, ``y = 2x + noise`` (some cells
missing), ``count`` a nullable integer, ``kind`` a category that depends on ``x``, ``flag``
a boolean and ``when`` a datetime."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polydiff
from polydiff_tabular import metrics as M

N = 300


def draw(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) + shift
    y = 2.0 * x + 0.5 * rng.normal(size=n)
    y[rng.random(n) < 0.05] = np.nan
    count = pd.array(rng.poisson(3.0, size=n), dtype="Int64")
    count[rng.random(n) < 0.05] = pd.NA
    kind = np.where(x + 0.3 * rng.normal(size=n) > 0, "gentoo", "adelie").astype(object)
    kind[rng.random(n) < 0.1] = "chinstrap"
    when = pd.Timestamp("2007-01-01") + pd.to_timedelta(rng.integers(0, 1000, size=n), unit="D")
    return pd.DataFrame({"x": x, "y": y, "count": count,
                         "kind": pd.Categorical(kind, categories=["adelie", "chinstrap", "gentoo"]),
                         "flag": rng.random(n) < 0.3, "when": when})


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["metric"]: r for r in rows if "column" not in r}


def test_column_kinds_come_from_the_decoded_dtypes():
    kinds = {c: M.column_kind(s) for c, s in draw(20, 0).items()}
    assert kinds == {"x": "numeric", "y": "numeric", "count": "numeric", "kind": "categorical",
                     "flag": "categorical", "when": "datetime"}
    assert M.column_kind(pd.Series(["a", None], dtype="string")) == "categorical"
    assert M.column_kind(pd.Series([True, None], dtype="boolean")) == "categorical"


def test_given_kinds_override_the_dtypes():
    real = draw(N, 0).assign(year=lambda f: 2007 + (f["x"] > 0).astype("int64"))
    by_dtype = {r["column"]: r["metric"] for r in M.column_shapes_frames(real, real)[1:]}
    given = {r["column"]: r["metric"] for r in M.column_shapes_frames(real, real, {"year": "categorical"})[1:]}
    assert by_dtype["year"] == "ks_complement" and given["year"] == "tv_complement"
    assert M.resolve_kinds(real, ["count", "flag"], {"count": "integer", "flag": "boolean"}) == {
        "count": "numeric", "flag": "categorical"}
    with pytest.raises(ValueError, match="column 'x' has kind 'float'"):
        M.resolve_kinds(real, ["x"], {"x": "float"})


def test_a_table_against_itself_has_perfect_shapes_and_pair_trends():
    real = draw(N, 0)
    shapes = M.column_shapes_frames(real, real.copy())
    assert shapes[0]["metric"] == "column_shapes" and shapes[0]["value"] == 1.0 and shapes[0]["columns"] == 6
    assert {r["column"]: r["metric"] for r in shapes[1:]} == {
        "x": "ks_complement", "y": "ks_complement", "count": "ks_complement", "when": "ks_complement",
        "kind": "tv_complement", "flag": "tv_complement"}
    trends = M.column_pair_trends_frames(real, real.copy())
    assert trends[0]["value"] == pytest.approx(1.0) and trends[0]["pairs"] == 15
    pair = {(r["column"], r["column_2"]): r["metric"] for r in trends[1:]}
    assert pair[("x", "y")] == "correlation_similarity" and pair[("x", "when")] == "correlation_similarity"
    assert pair[("x", "kind")] == "contingency_similarity" and pair[("kind", "flag")] == "contingency_similarity"


def test_known_values_of_the_column_statistics():
    real = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert M.ks_complement(real, real + 10) == 0.0
    assert M.ks_complement(real, pd.Series([1.0, 2.0, np.nan, np.nan])) == pytest.approx(0.5)
    a = pd.Series(["a", "a", "b", None])
    assert M.tv_complement(a, pd.Series(["a", "b", "b", "b"])) == pytest.approx(1 - 0.5 * (0.25 + 0.5 + 0.25))
    line = pd.DataFrame({"u": [0.0, 1.0, 2.0, 3.0], "v": [0.0, 1.0, 2.0, 3.0]})
    flipped = pd.DataFrame({"u": [0.0, 1.0, 2.0, 3.0], "v": [3.0, 2.0, 1.0, 0.0]})
    assert M.correlation_similarity(line, flipped) == pytest.approx(0.0)
    assert M.correlation_similarity(line, pd.DataFrame({"u": [1.0] * 4, "v": [0.0, 1, 2, 3]})) is None


def test_numbers_are_cut_into_ten_bins_of_the_real_column_for_contingency():
    real = pd.Series(np.arange(100, dtype=float))
    labels_real, labels_syn = M.binned_labels(real, pd.Series([-50.0, 5.0, 99.0, 500.0, np.nan]))
    assert len(set(labels_real)) == 10
    assert list(labels_syn) == ["0", "0", "9", "9", M.MISSING]


def test_a_shifted_column_lowers_its_shape_and_a_broken_dependence_lowers_the_pair_trends():
    real, other = draw(N, 0), draw(N, 1)
    same_law = by_name(M.column_shapes_frames(real, other))["column_shapes"]["value"]
    assert 0.85 < same_law < 1.0
    shifted = other.assign(x=other["x"] + 1.5)
    rows = {r.get("column"): r["value"] for r in M.column_shapes_frames(real, shifted)}
    assert rows["x"] < 0.6 and rows[None] < same_law
    trends = by_name(M.column_pair_trends_frames(real, other))["column_pair_trends"]["value"]
    rng = np.random.default_rng(3)
    shuffled = other.assign(y=rng.permutation(other["y"].to_numpy()), kind=other["kind"].to_numpy()[rng.permutation(N)])
    broken = M.column_pair_trends_frames(real, shuffled)
    assert by_name(broken)["column_pair_trends"]["value"] < trends
    before = {(r["column"], r["column_2"]): r["value"] for r in M.column_pair_trends_frames(real, other)[1:]}
    after = {(r["column"], r["column_2"]): r["value"] for r in broken[1:]}
    assert before[("x", "y")] > 0.95 and after[("x", "y")] < 0.6  # r = 0.97 in the real table, about 0 shuffled
    assert after[("x", "kind")] < before[("x", "kind")] - 0.15
    assert after[("x", "count")] == before[("x", "count")]  # a pair both tables share unchanged


def test_detection_cannot_tell_a_table_from_itself_or_from_the_same_law_but_spots_a_shift():
    real = draw(N, 0)
    for other in (real.copy(), draw(N, 1)):
        rows = by_name(M.detection_frames(real, other, seed=0))
        assert 0.35 < rows["detection"]["value"] < 0.65
        assert rows["detection_score"]["value"] > 0.7
    shifted = by_name(M.detection_frames(real, draw(N, 1, shift=3.0), seed=0))
    assert shifted["detection"]["value"] > 0.95 and shifted["detection_score"]["value"] < 0.1


def test_detection_is_seeded_and_needs_rows():
    real, other = draw(60, 0), draw(60, 1)
    assert M.detection_frames(real, other, seed=4) == M.detection_frames(real, other, seed=4)
    with pytest.raises(ValueError, match="detection: needs at least 3"):
        M.detection_frames(real, other.head(2))


def test_ml_efficiency_of_the_real_training_rows_equals_the_real_score():
    train, test = draw(N, 0), draw(N, 1)
    (row,) = M.ml_efficiency_frames(train.copy(), train, test, "kind")
    assert row["statistic"] == "macro_f1" and row["target"] == "kind"
    assert row["value"] == row["real"] and row["ratio"] == 1.0 and row["accuracy"] == row["real_accuracy"]
    assert row["real_accuracy"] > 0.7  # kind follows x
    noise = train.assign(kind=train["kind"].to_numpy()[np.random.default_rng(0).permutation(N)])
    (worse,) = M.ml_efficiency_frames(noise, train, test, "kind")
    assert worse["real"] == row["real"] and worse["ratio"] < 0.8


def test_ml_efficiency_regresses_a_numeric_target():
    train, test = draw(N, 0), draw(N, 1)
    (row,) = M.ml_efficiency_frames(train, train, test, "y")
    assert row["statistic"] == "r2" and row["value"] == row["real"] > 0.7 and row["ratio"] == 1.0
    (one_class,) = M.ml_efficiency_frames(train.assign(flag=True), train, test, "flag")
    share_true = float(test["flag"].mean())
    assert one_class["accuracy"] == pytest.approx(share_true)  # a single class: always predicted
    with pytest.raises(ValueError, match="'price' is not in the synthetic table"):
        M.ml_efficiency_frames(train, train.assign(price=1.0), test.assign(price=1.0), "price")


def test_dcr_of_copied_training_rows_is_zero_and_of_new_rows_about_one():
    train, holdout, fresh = draw(N, 0), draw(N, 1), draw(N, 2)
    (copied,) = M.dcr_frames(train.sample(N, replace=True, random_state=0), train, holdout)
    assert copied["value"] == 0.0 and copied["exact_copies"] == 1.0 and copied["close_share"] == 1.0
    (new,) = M.dcr_frames(fresh, train, holdout)
    assert 0.75 < new["value"] < 1.33 and new["close_share"] < 0.15 and new["exact_copies"] == 0.0
    assert new["median_holdout"] > 0


def test_the_record_distance_follows_sdmetrics_definition():
    train = pd.DataFrame({"a": [0.0, 10.0], "b": ["u", "v"], "c": [1.0, np.nan]})
    distance = M.RecordDistance(train, ["a", "b", "c"])
    query = pd.DataFrame({"a": [5.0, 0.0], "b": ["v", "u"], "c": [np.nan, 1.0]})
    # row 0: to train row 1: (0.5 + 0 + 0) / 3; row 1 equals train row 0
    assert distance.nearest(query) == pytest.approx([0.5 / 3, 0.0])


class _TableModality:
    """A stand-in for the tabular modality: a State ``{"row": (n, 1) ids}`` decodes to those
    rows of a fixed table; ``frame("train")`` is the training table."""

    name = "tabular"
    target = "kind"

    def __init__(self, table: pd.DataFrame, train: pd.DataFrame) -> None:
        self.table, self.train = table, train

    def decode(self, state: polydiff.State) -> pd.DataFrame:
        return self.table.iloc[state["row"].reshape(-1).numpy()].reset_index(drop=True)

    def frame(self, split: str) -> pd.DataFrame:
        assert split == "train"
        return self.train


def test_the_state_metrics_decode_through_the_modality_and_are_registered():
    train, other = draw(N, 0), draw(N, 1)
    modality = _TableModality(pd.concat([train, other], ignore_index=True), train)
    samples = {"row": torch.arange(N)[:, None]}  # the training rows themselves
    reference = {"row": torch.arange(N, 2 * N)[:, None]}
    specs = {s.name: s for s in M.metric_specs()}
    assert set(specs) == {"column_shapes", "column_pair_trends", "detection", "ml_efficiency", "dcr"}
    assert all(s.modalities == {"tabular"} and s.kit_options == M.KIT_MODALITY for s in specs.values())
    assert not specs["detection"].higher_is_better and specs["column_shapes"].higher_is_better
    results = {name: spec.function(samples, reference, spaces={}, generator=torch.Generator().manual_seed(0),
                                   modality=modality) for name, spec in specs.items()}
    assert results["column_shapes"] == M.column_shapes_frames(other, train)
    assert results["ml_efficiency"][0]["ratio"] == 1.0
    assert results["dcr"][0]["value"] == 0.0
    for rows in results.values():
        assert rows and all(isinstance(r["metric"], str) and np.isfinite(r["value"]) for r in rows)
    with pytest.raises(ValueError, match="needs the tabular modality"):
        M.column_shapes(samples, reference, spaces={})


def test_ml_efficiency_warns_and_gives_no_rows_without_a_sampled_target():
    train = draw(40, 0)
    modality = _TableModality(train.drop(columns="kind"), train)
    state = {"row": torch.arange(40)[:, None]}
    with pytest.warns(UserWarning, match="target 'kind' is not among the sampled columns"):
        assert M.ml_efficiency(state, state, spaces={}, modality=modality) == []


def test_the_metrics_on_the_penguins_modality():
    from polydiff_tabular.modality import make_tabular_modality

    modality = make_tabular_modality(**M.KIT_MODALITY)
    train, validation = modality.dataset("train"), modality.dataset("validation")
    stack = lambda data: {f: torch.stack([data[i][f] for i in range(len(data))]) for f in modality.spaces}
    samples, reference = stack(train), stack(validation)
    kinds = M.modality_kinds(modality)
    assert kinds["species"] == "categorical" and set(kinds) == set(modality.frame("train").columns)
    rows = {s.name: s.function(samples, reference, spaces=modality.spaces, generator=torch.Generator().manual_seed(0),
                               modality=modality) for s in M.metric_specs()}
    assert by_name(rows["column_shapes"])["column_shapes"]["value"] > 0.6
    assert rows["ml_efficiency"][0]["target"] == modality.target
    assert rows["ml_efficiency"][0]["ratio"] == pytest.approx(1.0, abs=0.02)  # decode(encode(train)) ~ train
    assert rows["dcr"][0]["value"] < 0.01  # the samples are the training rows
    assert all(np.isfinite(r["value"]) for group in rows.values() for r in group)
