"""MNIST 5k at one fixed training budget (CPU time): polydiff's processes against diffusers.

Every row trains the same U-Net (``polydiff_image``'s ``unet``, the same widths) for the
same number of wall-clock seconds on the MNIST 5k training split, then samples at equal
network-evaluation budgets (NFE 10 / 20 / 50) and scores the samples with the image
plugin's FD-classifier and k-NN precision / recall against the validation split:

- polydiff, Gaussian EDM (x0 + EDM weighting and preconditioning), sampled with Heun
  (EDM Algorithm 2; 2 NFE per step) and DPM-Solver++ 2M;
- polydiff, flow (rectified flow, velocity), sampled with Euler and DPM-Solver++ 2M;
- polydiff, reflected diffusion on the pixel box [0, 1], sampled with the reflected ODE;
- polydiff, masked diffusion on 16 grey levels, sampled with the masked ancestral sampler;
- the peer baseline: the same network trained with diffusers' ``DDPMScheduler`` (1000
  discrete steps, linear betas, eps prediction, the hand-written loop of the diffusers
  tutorials) and sampled with diffusers' DDIM and DPM-Solver++ 2M schedulers.

All rows use AdamW at the same learning rate and batch size, an EMA of the weights and one
torch thread (``--threads``). The training budget is counted in CPU seconds of this process
(``time.process_time``), which equals wall-clock seconds for a one-thread run on an idle core
and, unlike wall-clock time, is not shortened for one row by other load on the machine. "FD-classifier" is a Fréchet distance in the feature space of a
small CNN trained here on the training split (no Inception weights exist offline), so its
values are not FID values; its accuracy is printed with the table.

    python bench/image_mnist.py [--seconds 300 --n 1000 --nfe 10 20 50]

Writes ``bench/results/image_mnist.md``, ``bench/results/image_mnist.csv`` and a PNG grid
per row under ``bench/results/image_mnist/``.
"""
from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import polydiff
from polydiff.training import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from common import CPUBudget, note_line, report_arguments, save_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"
def unet(args: argparse.Namespace) -> dict:
    """The U-Net every row trains (``--channels`` wide at 28 x 28, attention at 7 x 7)."""
    return {"name": "unet", "channels": args.channels, "groups": min(32, args.channels // 2),
            "channel_mults": [1, 2, 2], "attention_resolutions": [7]}


def polydiff_rows(args: argparse.Namespace) -> dict[str, dict]:
    """The polydiff configurations: name -> (modality options, corruption table, samplers)."""
    cont = {"representation": "continuous"}
    return {
        "polydiff gaussian-edm": {"modality": cont, "corruption": {"name": "gaussian", "schedule": "edm"},
                                  "samplers": [("heun", 2), ("dpmpp_2m", 1)]},
        "polydiff flow": {"modality": cont, "corruption": {"name": "gaussian", "schedule": "flow"},
                          "samplers": [("euler", 1), ("dpmpp_2m", 1)]},
        "polydiff reflected": {"modality": {"representation": "bounded"}, "corruption": {"name": "reflected"},
                               "samplers": [("reflected_ode", 2)]},
        "polydiff masked-16": {"modality": {"representation": "discrete", "levels": 16},
                               "corruption": {"name": "masked"}, "samplers": [("masked", 1)]},
    }


def config(name: str, row: dict, args: argparse.Namespace, root: str) -> dict:
    return polydiff.config_from_dict({
        "experiment": {"name": name.replace(" ", "-"), "seed": 0, "run_root": root, "device": "cpu"},
        "modality": {"name": "image", "dataset": "mnist", **row["modality"]},
        "corruption": row["corruption"],
        "denoiser": unet(args),
        "training": {"steps": 10**7, "batch_size": args.batch, "lr": args.lr, "warmup_steps": 200,
                     "lr_schedule": "constant", "ema_decay": args.ema, "log_every": 100, "checkpoint_every": 0,
                     "progress": False},
        "sampling": {"sampler": row["samplers"][0][0], "steps": 10, "batch_size": 500},
        "evaluation": {"n_samples": args.n, "metrics": ["fd_classifier", "precision_recall"]},
    })


def run_polydiff(name: str, row: dict, args: argparse.Namespace, out: Path) -> list[dict]:
    from polydiff.training.periodic import reference_batch

    with tempfile.TemporaryDirectory() as root:
        clock = CPUBudget(args.seconds)
        manager = polydiff.make_plugin_manager(extra_plugins={"wallclock": clock})
        experiment = polydiff.build_experiment(config(name, row, args, root), manager)
        trainer = Trainer(experiment, Path(root) / "run")
        result = trainer.fit()
        reference = reference_batch(experiment, args.n, "validation")
        rows = []
        for sampler, per_step in row["samplers"]:
            for nfe in args.nfe:
                steps = max(1, nfe // per_step)
                g = torch.Generator().manual_seed(1)
                start = time.perf_counter()
                sampled = experiment.sample(trainer.ema_model.eval(), args.n, sampler=sampler, steps=steps, generator=g)
                seconds = time.perf_counter() - start
                metrics = {r["metric"]: r["value"] for r in experiment.evaluate(
                    sampled.state, {"image": reference["image"]}, generator=torch.Generator().manual_seed(0),
                    metrics=["fd_classifier", "precision_recall"])}
                if nfe == args.nfe[-1]:
                    experiment.modality.write_artefacts(sampled.state, out / f"{name}-{sampler}".replace(" ", "_"))
                rows.append({"row": name, "sampler": sampler, "nfe": sampled.nfe, "train_steps": result.steps,
                             "sample_seconds": seconds, **metrics})
                print(f"{name:>24} {sampler:>14} nfe={sampled.nfe:<3} {metrics}", file=sys.stderr)
        return rows


def run_diffusers(args: argparse.Namespace, out: Path) -> list[dict]:
    """The diffusers tutorial loop: DDPMScheduler.add_noise, eps MSE, AdamW, EMA; DDIM / DPM++ sampling."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    from polydiff.training.periodic import reference_batch

    with tempfile.TemporaryDirectory() as root:
        manager = polydiff.make_plugin_manager()
        experiment = polydiff.build_experiment(config("diffusers", {"modality": {"representation": "continuous"},
                                                                     "corruption": {"name": "gaussian",
                                                                                    "schedule": "vp-linear"},
                                                                     "samplers": [("ddim", 1)]}, args, root), manager)
        model = experiment.denoiser.train()
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
        train = experiment.modality.dataset("train")
        loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(0))
        noise_sched = DDPMScheduler(num_train_timesteps=1000)
        steps, start = 0, time.process_time()
        while time.process_time() - start < args.seconds:
            for batch in loader:
                x0 = batch["image"]
                noise = torch.randn_like(x0)
                t = torch.randint(0, 1000, (x0.shape[0],))
                x_t = noise_sched.add_noise(x0, noise, t)
                pred = model({"image": x_t}, (t.float() + 1) / 1000, None)["image"]
                loss = torch.nn.functional.mse_loss(pred, noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                for group in opt.param_groups:
                    group["lr"] = args.lr * min(1.0, (steps + 1) / 200)
                opt.step()
                with torch.no_grad():
                    decay = min(args.ema, (1 + steps) / (10 + steps))
                    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
                steps += 1
                if time.process_time() - start > args.seconds:
                    break
        reference = reference_batch(experiment, args.n, "validation")
        rows = []
        for label, cls, extra in (("DDIM", DDIMScheduler, {"timestep_spacing": "trailing"}),
                                  ("DPM++2M", DPMSolverMultistepScheduler, {})):
            for nfe in args.nfe:
                sched = cls.from_config(noise_sched.config, **extra)
                sched.set_timesteps(nfe)
                g = torch.Generator().manual_seed(1)
                x = torch.randn((args.n, *experiment.spaces["image"].shape), generator=g)
                begin = time.perf_counter()
                with torch.no_grad():
                    for t in sched.timesteps:
                        t_vec = torch.full((args.n,), (float(t) + 1) / 1000)
                        eps = torch.cat([ema({"image": x[i:i + 500]}, t_vec[i:i + 500], None)["image"]
                                         for i in range(0, args.n, 500)])
                        x = sched.step(eps, t, x).prev_sample
                seconds = time.perf_counter() - begin
                samples = {"image": x.clamp(-1, 1)}
                metrics = {r["metric"]: r["value"] for r in experiment.evaluate(
                    samples, {"image": reference["image"]}, generator=torch.Generator().manual_seed(0),
                    metrics=["fd_classifier", "precision_recall"])}
                if nfe == args.nfe[-1]:
                    experiment.modality.write_artefacts(samples, out / f"diffusers-{label}")
                rows.append({"row": "diffusers ddpm (peer)", "sampler": label, "nfe": nfe, "train_steps": steps,
                             "sample_seconds": seconds, **metrics})
                print(f"{'diffusers':>24} {label:>14} nfe={nfe:<3} {metrics}", file=sys.stderr)
        return rows


def write(table: pd.DataFrame, args: argparse.Namespace) -> str:
    metric_cols = [c for c in ("fd_classifier", "precision", "recall") if c in table.columns]
    # Heun-type samplers spend 2 NFE per step minus one: file each under the budget it was asked for
    table = table.assign(nfe_budget=[min([b for b in args.nfe if b >= n] or [n]) for n in table["nfe"]])
    wide = table.pivot_table(index=["row", "sampler", "train_steps"], columns="nfe_budget", values=metric_cols,
                             sort=False)
    wide.columns = [f"{m}@{n}" for m, n in wide.columns]
    best = table.groupby("nfe_budget")["fd_classifier"].min()
    peer = table[table["row"].str.startswith("diffusers")].groupby("nfe_budget")["fd_classifier"].min()
    ours = table[table["row"].str.startswith("polydiff")].groupby("nfe_budget")["fd_classifier"].min()
    verdict = "\n".join(f"- NFE {nfe}: best polydiff FD-classifier {ours[nfe]:.3g} vs diffusers {peer[nfe]:.3g} "
                        f"({'better' if ours[nfe] < peer[nfe] else 'worse'})" for nfe in best.index if nfe in peer)
    device = f"cpu ({torch.get_num_threads()} threads)"
    note = note_line(args)
    text = (f"# MNIST 5k: polydiff processes against the diffusers DDPM loop at equal training time\n\n{note}"
            f"{args.seconds:.0f} CPU seconds of training per row, batch {args.batch}, lr {args.lr}, "
            f"U-Net {unet(args)}, EMA {args.ema}, "
            f"{args.n} samples against {args.n} validation images; {device}, torch {torch.__version__}, "
            f"python {platform.python_version()}. FD-classifier is not FID (see the script's docstring).\n\n"
            + wide.reset_index().to_markdown(index=False, floatfmt=".4g") + "\n\n" + verdict + "\n")
    return save_report(args.out, "image_mnist", text, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="training CPU seconds per row")
    parser.add_argument("--n", type=int, default=1000, help="samples and reference images")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--channels", type=int, default=32, help="U-Net base width")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights (every row)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the budget is CPU time)")
    parser.add_argument("--only", nargs="*", default=None, help="row names to run (default: all)")
    report_arguments(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.rewrite is not None:
        print(write(pd.read_csv(args.rewrite), args))
        return 0
    torch.set_num_threads(args.threads)
    out = args.out / "image_mnist"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, row in polydiff_rows(args).items():
        if args.only is None or name in args.only:
            rows += run_polydiff(name, row, args, out)
    if args.only is None or "diffusers" in args.only:
        rows += run_diffusers(args, out)
    print(write(pd.DataFrame(rows), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
