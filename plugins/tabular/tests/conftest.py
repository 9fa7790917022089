"""Shared fixtures of the tabular plugin's tests: the kit's ``private_cache`` (no writes to
~/.cache/polydiff; ``pytest_plugins`` may only be set in the root conftest, so it is imported
here), one penguins modality per session, and a small mixed-type CSV."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polydiff.testing.fixtures import private_cache  # noqa: F401  (an autouse fixture)
from polydiff_tabular.modality import TabularModality, make_tabular_modality


@pytest.fixture(scope="session")
def penguins() -> TabularModality:
    """The default penguins modality (built once: tests must not change it)."""
    return make_tabular_modality()


def mixed_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A table with one column of every kind and a few missing cells, as a user would write it."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "flag": pd.Series(rng.choice([True, False], n), dtype=object),
        "day": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "count": rng.integers(0, 500, n).astype(float),
        "score": rng.normal(size=n).round(3),
        "grade": rng.choice(["low", "mid", "high"], n),
        "code": rng.choice([1, 2, 3], n),
        "stamp": pd.date_range("2021-01-01 10:00", periods=n, freq="37min").strftime("%Y-%m-%d %H:%M:%S"),
    })
    frame.loc[3, "flag"] = None
    frame.loc[[5, 9], "grade"] = None
    frame.loc[7, "count"] = np.nan
    return frame


@pytest.fixture
def mixed() -> pd.DataFrame:
    """A fresh ``mixed_frame()``."""
    return mixed_frame()


@pytest.fixture
def mixed_csv(tmp_path, mixed):
    """``mixed_frame()`` written to a CSV file; returns its path."""
    path = tmp_path / "mixed.csv"
    mixed.to_csv(path, index=False)
    return path
