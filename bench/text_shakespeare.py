"""Shakespeare at one fixed training budget: masked, uniform and embedding diffusion against an AR model.

Every row trains a transformer of the same width and depth on the same packed character
sequences of the ``shakespeare`` corpus (train works only), for the same number of CPU
seconds (``bench/common.py``), with AdamW, the same learning rate, batch and EMA:

- masked diffusion (MDLM, Sahoo et al. 2024): ``text_transformer``, log-linear schedule,
  sampled with the cached ancestral sampler (``masked_cached``);
- uniform diffusion (UDLM, Schiff et al. 2024): ``text_transformer``, generic ancestral sampler;
- Gaussian diffusion on fixed token embeddings (Diffusion-LM, Li et al. 2022):
  ``text_transformer`` on 16-dim embeddings, eps parametrisation (its bound stays finite at
  small t, unlike x0 prediction), VP-cosine, DPM-Solver++ 2M,
  samples rounded to the nearest embedding;
- the autoregressive baseline: ``text_causal`` (same blocks, causal), next-token cross
  entropy, sampled left to right with its key / value cache at temperature 1.

Reported per row, on held-out works: bits per character (the NELBO for the diffusion rows, an
upper bound; the exact NLL for the AR row) and the matching perplexity; per sampler step count:
generative perplexity of the samples under the trained AR row (the "judge"), the unigram entropy
of the samples (the corpus's is printed; low entropy flags repetition that flatters generative
perplexity), network calls, tokens per call and sampling speed in characters per CPU second
(one torch thread: CPU time measures the work done, whatever else runs on the machine).

    python bench/text_shakespeare.py [--seconds 600 --n 64 --steps 16 32 64 128]

Writes ``bench/results/text_shakespeare.md`` / ``.csv``, and under ``bench/results/text_shakespeare/``
the samples of every row and step count and an infilling demo per row (``<row>-infilling/samples.txt``:
spans between a left and a right context, and a prefix prompt).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import polydiff
from polydiff.runs import likelihood_rows
from polydiff.training import Trainer
from polydiff.training.periodic import reference_batch

sys.path.insert(0, str(Path(__file__).parent))
from common import CPUBudget, note_line, report_arguments, save_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"
AR = "autoregressive (AR)"
ROWS = {
    AR: {"corruption": {"name": "autoregressive"}, "denoiser": "text_causal", "sampler": "autoregressive"},
    "masked (MDLM)": {"corruption": {"name": "masked"}, "denoiser": "text_transformer", "sampler": "masked_cached"},
    "uniform (UDLM)": {"corruption": {"name": "uniform"}, "denoiser": "text_transformer", "sampler": "ancestral"},
    "embedding gaussian (Diffusion-LM)": {
        "modality": {"representation": "embedding", "embedding_dim": 16},
        "corruption": {"name": "gaussian", "schedule": "vp-cosine"},
        "denoiser": "text_transformer", "sampler": "dpmpp_2m"},
}


def config(name: str, row: dict, args: argparse.Namespace, root: str, judge: str | None) -> dict:
    return polydiff.config_from_dict({
        "experiment": {"name": name.split()[0], "seed": 0, "run_root": root, "device": "cpu"},
        "modality": {"name": "text", "dataset": "shakespeare", "tokenizer": "char", "seq_len": args.seq_len,
                     **row.get("modality", {}), **({"judge": judge} if judge else {})},
        "corruption": row["corruption"],
        "denoiser": {"name": row["denoiser"], "width": args.width, "depth": args.depth, "heads": args.heads},
        "training": {"steps": 10**7, "batch_size": args.batch, "lr": args.lr, "warmup_steps": 200,
                     "lr_schedule": "constant", "ema_decay": args.ema, "log_every": 200, "checkpoint_every": 0,
                     "progress": False},
        "sampling": {"sampler": row["sampler"], "steps": args.steps[0], "batch_size": args.n},
        "evaluation": {"n_samples": args.n, "metrics": ["unigram_entropy"]},
    })


def run_row(name: str, row: dict, args: argparse.Namespace, root: str, judge: str | None, out: Path
            ) -> tuple[list[dict], str]:
    """Train one row, measure its likelihood and sample it at each step count; return rows and its run dir."""
    manager = polydiff.make_plugin_manager(extra_plugins={"budget": CPUBudget(args.seconds)})
    experiment = polydiff.build_experiment(config(name, row, args, root, judge), manager)
    run_dir = Path(root) / name.split()[0]
    trainer = Trainer(experiment, run_dir)
    result = trainer.fit()
    model = trainer.ema_model.eval()
    common = {"row": name, "train_steps": result.steps}
    likelihood = {r["metric"]: r["value"] for r in likelihood_rows(experiment, model, items=args.items)}
    common.update(bits_per_char=likelihood.get("nelbo_bits_per_char"),
                  perplexity_per_char=2 ** min(likelihood["nelbo_bits_per_char"], 1000.0))
    print(f"{name:>34}: {result.steps} steps, {common['bits_per_char']:.3f} bits/char", file=sys.stderr)
    reference = reference_batch(experiment, args.n, "validation")
    rows = []
    for steps in ([args.seq_len] if row["sampler"] == "autoregressive" else args.steps):
        start = time.process_time()
        sampled = experiment.sample(model, args.n, steps=steps, generator=torch.Generator().manual_seed(1))
        seconds = time.process_time() - start
        texts = experiment.modality.decode(sampled.state)
        chars = sum(len(t) for t in texts)
        metrics = ["unigram_entropy"] + (["generative_perplexity"] if judge or row["sampler"] == "autoregressive"
                                         else [])
        if row["sampler"] == "autoregressive" and not judge:
            experiment.modality.judge = str(run_dir)
        scores = {}
        for r in experiment.evaluate(sampled.state, {"tokens": reference["tokens"]}, metrics=metrics):
            scores[r["metric"]] = r["value"]
            if r["metric"] == "unigram_entropy":
                scores["corpus_entropy"] = r.get("reference")
        folder = out / f"{name.split()[0]}-{steps}"
        experiment.modality.write_artefacts(sampled.state, folder)
        rows.append({**common, "sampler": row["sampler"], "steps": steps, "nfe": sampled.nfe,
                     "tokens_per_call": args.seq_len / max(sampled.nfe, 1), "chars_per_second": chars / seconds,
                     "gen_perplexity": scores.get("generative_perplexity"), "entropy": scores.get("unigram_entropy"),
                     "corpus_entropy": scores.get("corpus_entropy")})
        print(f"{'':>34}  steps={steps:<4} {rows[-1]}", file=sys.stderr)
    write_infilling(experiment, model, out / f"{name.split()[0]}-infilling")
    return rows, str(run_dir)


INFILL = ["ROMEO:\n{{60}}\nJULIET:\n", "To be, or not to be, {{40}} the question.", "KING HENRY V:\n"]
"""Infilling templates (``polydiff_text.prompts``): spans with left and right context, and a prefix."""


def write_infilling(experiment, model, folder: Path) -> None:
    """Fill ``INFILL`` with the row's sampler; ``samples.txt`` shows each prompt, then the sample."""
    from polydiff_text.prompts import known_state

    known, mask = known_state(experiment.modality, INFILL)
    out = experiment.sample(model, len(INFILL), known=known, mask=mask, generator=torch.Generator().manual_seed(2))
    given = mask["tokens"] if mask["tokens"].ndim == 2 else mask["tokens"][..., 0]
    experiment.modality.write_artefacts({**out.state, "tokens.mask": given}, folder)


def write(table: pd.DataFrame, args: argparse.Namespace) -> str:
    ar = table[table["row"] == AR].iloc[0]
    masked = table[table["row"] == "masked (MDLM)"]
    gap = masked["bits_per_char"].iloc[0] / ar["bits_per_char"] - 1 if len(masked) else float("nan")
    faster = masked[(masked["chars_per_second"] > ar["chars_per_second"])
                    & (masked["gen_perplexity"] <= ar["gen_perplexity"])]
    verdict = (f"- masked bound vs AR exact bits/char: {gap:+.1%} (target: within +15 %) "
               f"-> {'met' if gap <= 0.15 else 'not met'}\n"
               f"- masked sampling faster than AR at a generative perplexity no worse than AR's "
               f"({ar['gen_perplexity']:.3g}): "
               + (", ".join(f"{int(r.steps)} steps ({r.chars_per_second / ar['chars_per_second']:.2f}x, "
                            f"gen. ppl {r.gen_perplexity:.3g})" for r in faster.itertuples()) or "none")
               + f" -> {'met' if len(faster) else 'not met'}")
    note = note_line(args)
    shown = table.drop(columns=["corpus_entropy"])
    text = (f"# Shakespeare (characters): diffusion language models against an autoregressive model\n\n{note}"
            f"{args.seconds:.0f} CPU seconds of training per row ({torch.get_num_threads()} torch thread), "
            f"sequences of {args.seq_len} characters, batch {args.batch}, lr {args.lr}, EMA {args.ema}, "
            f"width {args.width}, depth {args.depth}, heads {args.heads}; bits/char on the first {args.items} "
            f"validation sequences (held-out works); {args.n} samples per step count, generative perplexity under "
            f"the AR row's model; corpus unigram entropy {table['corpus_entropy'].dropna().iloc[0]:.3f} bits. "
            f"cpu, torch {torch.__version__}, python {platform.python_version()}.\n\n"
            + shown.to_markdown(index=False, floatfmt=".4g") + "\n\n" + verdict + "\n")
    return save_report(args.out, "text_shakespeare", text, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="training CPU seconds per row")
    parser.add_argument("--n", type=int, default=64, help="samples per step count")
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128], help="diffusion sampler steps")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--items", type=int, default=256, help="validation sequences for bits/char")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="rows to run besides the AR row (default: all)")
    report_arguments(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.rewrite is not None:
        print(write(pd.read_csv(args.rewrite), args))
        return 0
    torch.set_num_threads(args.threads)
    out = args.out / "text_shakespeare"
    out.mkdir(parents=True, exist_ok=True)
    rows, judge = [], None
    with tempfile.TemporaryDirectory() as root:
        for name, row in ROWS.items():
            if name == AR or args.only is None or name.split()[0] in args.only:
                new, run_dir = run_row(name, row, args, root, judge, out)
                rows += new
                judge = judge or run_dir
    print(write(pd.DataFrame(rows), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
