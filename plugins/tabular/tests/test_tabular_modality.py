"""The ``tabular`` modality: fields, round trips of dtypes and categories, missing values,
conditioning, imputation masks, artefacts and option errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polydiff
from polydiff_tabular.modality import DEMO, make_tabular_modality

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def test_penguins_fields_in_contract_order(penguins) -> None:
    assert list(penguins.spaces) == ["num", "c_species", "c_island", "c_sex", "c_year", "m_bill_length_mm",
                                     "m_bill_depth_mm", "m_flipper_length_mm", "m_body_mass_g"]
    assert penguins.spaces["num"] == polydiff.Continuous((4,))
    assert penguins.spaces["c_sex"] == polydiff.Discrete((1,), 3)  # female, male, missing
    assert penguins.spaces["c_species"] == polydiff.Discrete((1,), 3)
    assert penguins.spaces["m_body_mass_g"] == polydiff.Discrete((1,), 2)
    assert penguins.cond_spaces == {} and penguins.target == "species"
    item = penguins.dataset("train")[0]
    assert item["num"].dtype == torch.float32 and item["num"].shape == (4,)
    assert item["c_island"].dtype == torch.int64 and item["c_island"].shape == (1,)


def test_numbers_are_quantile_normal_on_the_training_split(penguins) -> None:
    z = penguins.dataset("train").fields["num"]
    observed = ~penguins.dataset("train").fields["m_bill_length_mm"].bool().squeeze(1)
    column = z[observed, 0].double()
    assert abs(float(column.mean())) < 0.1 and abs(float(column.std()) - 1.0) < 0.15


def test_decode_encode_round_trip_keeps_dtypes_categories_and_missing_cells(penguins) -> None:
    train = penguins.frame("train")
    decoded = penguins.decode(penguins.encode(train))
    pd.testing.assert_frame_equal(decoded, train)  # dtypes, categories and NaN positions included
    assert decoded["flipper_length_mm"].dtype == "Int64" and decoded["sex"].dtype == "category"
    assert list(decoded["species"].cat.categories) == ["Adelie", "Chinstrap", "Gentoo"]
    fields = penguins.dataset("train").fields
    back = penguins.encode(penguins.decode(fields))
    for name in penguins.spaces:
        assert torch.allclose(back[name].double(), fields[name].double(), atol=1e-5), name


def test_validation_rows_are_clipped_to_the_training_range(penguins) -> None:
    validation = penguins.frame("validation")
    decoded = penguins.decode(penguins.encode(validation))
    assert decoded.dtypes.equals(validation.dtypes)
    assert decoded.isna().equals(validation.isna())
    for column in penguins.columns:
        if column.name in NUMBERS:
            expected = validation[column.name].astype("Float64").clip(column.min, column.max)
            assert np.allclose(decoded[column.name].astype("Float64").dropna(), expected.dropna())


def test_missing_cells_are_generated_at_the_rate_of_their_field(penguins) -> None:
    fields = penguins.dataset("train").fields
    train = penguins.frame("train")
    for name in NUMBERS:
        assert float(fields[f"m_{name}"].double().mean()) == pytest.approx(train[name].isna().mean())
    n = 4000
    g = torch.Generator().manual_seed(0)
    state = {"num": torch.randn(n, 4, generator=g),
             "m_body_mass_g": (torch.rand(n, 1, generator=g) < 0.3).long(),
             "c_sex": torch.multinomial(torch.tensor([0.45, 0.45, 0.10]), n, True, generator=g)[:, None]}
    decoded = penguins.decode(state)
    assert list(decoded.columns) == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
    assert decoded["body_mass_g"].isna().mean() == pytest.approx(0.3, abs=0.03)
    assert decoded["sex"].isna().mean() == pytest.approx(0.10, abs=0.02)
    assert decoded["bill_length_mm"].notna().all()  # no m_ field in the state: nothing missing


def test_any_numbers_decode_rounded_and_inside_the_training_range(penguins) -> None:
    state = {"num": 10 * torch.randn(500, 4, generator=torch.Generator().manual_seed(1))}
    decoded = penguins.decode(state)
    for column in penguins.columns:
        if column.name in NUMBERS:
            values = decoded[column.name].astype(float)
            assert values.min() >= column.min and values.max() <= column.max
    assert decoded["body_mass_g"].dtype == "Int64"
    assert np.all(decoded["bill_length_mm"] == decoded["bill_length_mm"].round(1))  # the data's one decimal


def test_mask_ids_left_by_a_sampler_decode_as_missing(penguins) -> None:
    k = penguins.spaces["c_species"].vocab_size  # the masked process's mask id
    decoded = penguins.decode({"c_species": torch.tensor([[0], [k], [2]]), "c_year": torch.tensor([[0], [1], [k]])})
    assert decoded["species"].isna().tolist() == [False, True, False]
    assert decoded["year"].tolist()[:2] == [2007, 2008] and pd.isna(decoded["year"].iloc[2])


def test_condition_on_moves_a_column_to_cond_spaces() -> None:
    modality = make_tabular_modality(condition_on=["species"])
    assert "c_species" in modality.cond_spaces and "c_species" not in modality.spaces
    assert modality.cond_spaces["c_species"] == polydiff.Discrete((1,), 3)
    item = modality.dataset("train")[0]
    assert set(item) == set(modality.spaces) | {"c_species"}
    train = modality.frame("train")
    fields = modality.encode(train)
    assert "c_species" not in fields and "species" not in modality.decode(fields).columns
    with_cond = modality.encode(train, conditions=True)
    pd.testing.assert_frame_equal(modality.decode(with_cond), train)


def test_known_from_frame_masks_the_observed_cells(penguins) -> None:
    rows = penguins.frame("train").head(6).copy()
    rows.loc[0, "bill_length_mm"] = np.nan
    rows.loc[1, "island"] = None
    rows = rows.drop(columns=["year"])
    known, mask = penguins.known_from_frame(rows)
    assert set(known) == set(mask) == set(penguins.spaces)
    assert mask["num"].shape == (6, 4) and mask["c_island"].shape == (6, 1)
    assert mask["num"][0].tolist() == [0.0, *(~rows.loc[0, NUMBERS[1:]].isna()).astype(float).tolist()]
    assert mask["c_island"][:, 0].tolist() == [1, 0, 1, 1, 1, 1]
    assert mask["c_year"].sum() == 0  # an absent column is imputed whole
    assert mask["m_bill_length_mm"].all() and not known["m_bill_length_mm"].any()  # imputed cells get values
    full = penguins.encode(penguins.frame("train").head(6))
    observed = mask["num"].bool()
    assert torch.allclose(known["num"][observed], full["num"][observed])
    assert torch.equal(known["c_species"], full["c_species"])


def test_imputation_keeps_the_observed_cells(penguins) -> None:
    config = polydiff.config_from_dict({
        **DEMO, "experiment": {"name": "impute", "seed": 0, "device": "cpu"},
        "denoiser": {"name": "tabular_mlp", "hidden": [16], "time_dim": 8, "embed_dim": 2},
        "sampling": {"sampler": "ancestral", "steps": 4}}, source="test")
    experiment = polydiff.build_experiment(config)
    rows = penguins.frame("validation").head(8).copy()
    rows.loc[[0, 2, 4], "body_mass_g"] = pd.NA
    rows.loc[[1, 3], "island"] = None
    known, mask = experiment.modality.known_from_frame(rows)
    out = experiment.sample(experiment.denoiser, len(rows), known=known, mask=mask,
                            generator=torch.Generator().manual_seed(0))
    imputed = experiment.modality.decode(out.state)
    observed = rows.notna()
    for name in rows.columns:
        keep = observed[name].to_numpy()
        if name in NUMBERS:
            assert np.allclose(imputed[name][keep].astype(float), rows[name][keep].astype(float), atol=0.05), name
        else:
            assert imputed[name][keep].tolist() == rows[name][keep].tolist(), name
    assert imputed.loc[[0, 2, 4], "body_mass_g"].notna().all()


def test_bounded_numbers_live_in_the_unit_box() -> None:
    modality = make_tabular_modality(bounded=True)
    assert modality.spaces["num"] == polydiff.Bounded((4,), 0.0, 1.0)
    z = modality.dataset("train").fields["num"]
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    train = modality.frame("train")
    pd.testing.assert_frame_equal(modality.decode(modality.encode(train)), train)


def test_every_kind_round_trips_from_a_users_csv(mixed_csv) -> None:
    modality = make_tabular_modality(dataset="files", path=str(mixed_csv), validation_fraction=0.25, seed=2)
    assert modality.target is None
    assert list(modality.spaces) == ["num", "c_flag", "c_grade", "c_code", "m_count"]
    assert modality.spaces["num"].shape == (4,)  # day, count, score, stamp
    train = modality.frame("train")
    assert train.dtypes.astype(str).tolist() == ["boolean", "datetime64[ns]", "Int64", "float64", "category",
                                                 "int64", "datetime64[ns]"]
    pd.testing.assert_frame_equal(modality.decode(modality.encode(train)), train)


def test_write_artefacts_writes_the_table_and_the_column_plot(penguins, tmp_path) -> None:
    fields = {name: value[:30] for name, value in penguins.dataset("validation").fields.items()}
    paths = penguins.write_artefacts({**fields, "num.mask": torch.ones(30, 4)}, tmp_path / "out")
    assert [p.name for p in paths] == ["synthetic.csv", "columns.png"]
    table = pd.read_csv(paths[0])
    assert list(table.columns) == list(penguins.frame("train").columns) and len(table) == 30
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].stat().st_size > 10_000


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": "adult"}, r"dataset = 'adult' is not allowed"),
    ({"dataset": "files"}, r"path = None is not allowed; dataset 'files' needs"),
    ({"path": "x.csv"}, r"path applies to dataset 'files' only"),
    ({"condition_on": "species"}, r"condition_on = 'species' is not allowed; allowed: a list"),
    ({"condition_on": ["body_mass_g"]}, r"column 'body_mass_g' is integer; only categorical"),
    ({"condition_on": ["beak"]}, r"column 'beak' is not in"),
    ({"target": "beak"}, r"target = 'beak' is not allowed"),
    ({"validation_fraction": 1.0}, r"validation_fraction = 1.0 is not allowed"),
    ({"max_rows": 1}, r"max_rows = 1 is not allowed"),
    ({"bounded": "yes"}, r"bounded = 'yes' is not allowed"),
    ({"rows": 5}, r"unknown option\(s\) \['rows'\]"),
])
def test_bad_options_are_named(options, message) -> None:
    with pytest.raises(polydiff.ConfigError, match=message):
        make_tabular_modality(**options)


def test_unknown_split_and_bad_input(penguins) -> None:
    with pytest.raises(ValueError, match=r"unknown split 'test'; allowed splits: \['train', 'validation'\]"):
        penguins.dataset("test")
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        penguins.encode(np.zeros((3, 8)))
    rows = penguins.frame("train").head(3).copy()
    rows["island"] = rows["island"].astype(str)
    rows.loc[0, "island"] = "Atlantis"
    with pytest.raises(polydiff.ConfigError, match=r"column 'island' row 0 .*'Atlantis', which is not one of"):
        penguins.encode(rows)


def test_an_outlying_maximum_is_not_spread_over_the_top_quantiles(tmp_path) -> None:
    """One quantile per row: standard normal draws decode above the bulk of the data at about
    the rate of the one outlier (1 in 4,000 rows), not across a whole top 0.1 % bin (1,000
    quantiles would put ~100 of 100,000 draws between the 99.9th percentile and the outlier)."""
    values = np.random.default_rng(0).normal(size=5000)
    values[0] = 1000.0
    path = tmp_path / "outlier.csv"
    pd.DataFrame({"value": values}).to_csv(path, index=False)
    modality = make_tabular_modality(dataset="files", path=str(path), validation_fraction=0.2)
    z = torch.randn(100_000, 1, generator=torch.Generator().manual_seed(0))
    decoded = modality.decode({"num": z})["value"].to_numpy()
    assert (decoded > 10).sum() < 60
    assert decoded.max() <= 1000.0
