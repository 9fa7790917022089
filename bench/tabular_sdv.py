"""The SDV side of ``bench/tabular.py``: fit SDV synthesizers and score tables with sdmetrics.

SDV, CTGAN, RDT and Copulas are under the Business Source License and need pandas < 3, so
they live in their own environment, ``.venv-sdv`` (``make bench-tabular`` creates it), and
polydiff never imports them. ``bench/tabular.py`` runs this script there and exchanges CSV
and JSON files with it:

    fit:   python bench/tabular_sdv.py fit --train train.csv --kinds kinds.json --seconds 120 --n 1000 --draws 4 --out DIR
    score: python bench/tabular_sdv.py score --real validation.csv --kinds kinds.json --out scores.json SYN.csv ...

``fit`` trains GaussianCopula (it needs far less than the budget) and CTGAN (Xu et al. 2019)
with as many epochs as fit the budget in CPU seconds (``ctgan_epoch_time`` times short fits
to separate the per-epoch time from the one-off data transforms, then a fresh model is
trained for ``(budget - setup) / epoch time`` epochs), on one torch thread, and writes
``<synthesizer>.csv`` (``--n`` rows; ``--draws`` tables, the k-th after the first as
``<synthesizer>_<k>.csv``) and ``fit.json`` (CPU seconds, epochs). ``score`` writes
sdmetrics' QualityReport properties (Column Shapes, Column Pair Trends) of each synthetic
table against the real one, to cross-check polydiff-tabular's own implementations.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd

SDTYPES = {"numeric": "numerical", "integer": "numerical", "categorical": "categorical",
           "boolean": "boolean", "datetime": "datetime"}


def metadata(frame: pd.DataFrame, kinds: dict[str, str]):
    """SDV single-table metadata with each column's sdtype from polydiff's column kinds."""
    from sdv.metadata import Metadata

    columns = {column: {"sdtype": SDTYPES[kinds[column]]} for column in frame.columns}
    return Metadata.load_from_dict({"METADATA_SPEC_VERSION": "V1", "tables": {"table": {"columns": columns}}})


def read(path: Path, kinds: dict[str, str]) -> pd.DataFrame:
    """A CSV with categorical columns as strings (SDV treats them as labels)."""
    frame = pd.read_csv(path)
    for column, kind in kinds.items():
        if kind == "categorical":
            frame[column] = frame[column].astype("string").astype(object).where(frame[column].notna(), None)
    return frame


def _ctgan_fit_seconds(md, train: pd.DataFrame, epochs: int) -> float:
    from sdv.single_table import CTGANSynthesizer

    start = time.process_time()
    CTGANSynthesizer(md, epochs=epochs, verbose=False).fit({"table": train})
    return time.process_time() - start


def ctgan_epoch_time(md, train: pd.DataFrame, budget: float) -> tuple[float, float]:
    """CTGAN's CPU seconds per epoch and its one-off setup (the data transforms), from fits of 1
    and of e = 2, 4, 8, ... epochs, doubling e until the extra epochs take a tenth of the budget
    (a small table's epoch lasts milliseconds, below the timer's noise for two epochs)."""
    one = _ctgan_fit_seconds(md, train, 1)
    count = 2
    while True:
        more = _ctgan_fit_seconds(md, train, count)
        if more - one >= 0.1 * budget or more >= 0.5 * budget or count >= 4096:
            epoch = max((more - one) / (count - 1), 1e-6)
            return epoch, max(one - epoch, 0.0)
        count *= 2


def write_draws(synthesizer, args: argparse.Namespace, stem: str) -> None:
    """``args.draws`` independent tables of ``args.n`` rows: ``<stem>.csv``, ``<stem>_2.csv``, ..."""
    for k in range(1, args.draws + 1):
        name = f"{stem}.csv" if k == 1 else f"{stem}_{k}.csv"
        synthesizer.sample(args.n)["table"].to_csv(args.out / name, index=False)


def fit(args: argparse.Namespace) -> None:
    import torch
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

    torch.set_num_threads(1)
    kinds = json.loads(args.kinds.read_text())
    train = read(args.train, kinds)
    md = metadata(train, kinds)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {}
    start = time.process_time()
    copula = GaussianCopulaSynthesizer(md)
    copula.fit({"table": train})  # SDV 2 takes and returns {table name: frame}
    info["sdv gaussian-copula"] = {"fit_cpu_seconds": time.process_time() - start}
    write_draws(copula, args, "gaussian_copula")
    epoch, overhead = ctgan_epoch_time(md, train, args.seconds)
    epochs = max(1, math.floor((args.seconds - overhead) / epoch))
    start = time.process_time()
    ctgan = CTGANSynthesizer(md, epochs=epochs, verbose=False)
    ctgan.fit({"table": train})
    info["sdv ctgan"] = {"fit_cpu_seconds": time.process_time() - start, "epochs": epochs,
                         "epoch_cpu_seconds": epoch, "setup_cpu_seconds": overhead}
    write_draws(ctgan, args, "ctgan")
    (args.out / "fit.json").write_text(json.dumps(info, indent=2))


def score(args: argparse.Namespace) -> None:
    from sdmetrics.reports.single_table import QualityReport

    kinds = json.loads(args.kinds.read_text())
    real = read(args.real, kinds)
    md = metadata(real, kinds).to_dict()["tables"]["table"]
    out = {}
    for path in args.synthetic:
        report = QualityReport()
        report.generate(real, read(Path(path), kinds)[list(real.columns)], md, verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        out[str(path)] = {"column_shapes": float(props["Column Shapes"]),
                          "column_pair_trends": float(props["Column Pair Trends"])}
    args.out.write_text(json.dumps(out, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--train", type=Path, required=True)
    f.add_argument("--kinds", type=Path, required=True)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--draws", type=int, default=1, help="independent synthetic tables to write")
    f.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--real", type=Path, required=True)
    s.add_argument("--kinds", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("synthetic", nargs="+")
    args = parser.parse_args()
    fit(args) if args.command == "fit" else score(args)


if __name__ == "__main__":
    main()
