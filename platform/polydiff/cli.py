"""The ``polydiff`` command: argument parsing only; the work happens in the modules it calls.

.. code-block:: text

    polydiff plugins [list [--all] [--json] | info NAME | install NAME | check NAME | new NAME [--dir D]]
    polydiff train CONFIG.toml [--set key=value ...] [--run-dir DIR] [--resume RUN_DIR]
    polydiff sample RUN_DIR [--n N --sampler S --steps K --grid G --guidance-scale W --seed S --out DIR
                             --inpaint FILE.safetensors]
    polydiff evaluate RUN_DIR [--n N --sampler S --steps K --seed S]
    polydiff compare GRID.toml [--out DIR]
    polydiff demo [--out DIR] [--steps N]

Global options: ``-p no:NAME`` (repeatable) blocks a plugin, ``--version``. Every
``PolydiffError`` is printed as ``polydiff: error: <message>`` with exit code 2 (set
``POLYDIFF_DEBUG=1`` for the traceback); Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from polydiff.errors import PolydiffError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _blocked(args: argparse.Namespace) -> list[str]:
    names = []
    for option in (args.plugin_options or []) + (getattr(args, "sub_plugin_options", None) or []):
        if not option.startswith("no:") or not option[3:]:
            raise PolydiffError(f"-p {option!r}: expected -p no:NAME to block the plugin NAME")
        names.append(option[3:])
    return names


def _manager(args: argparse.Namespace):
    from polydiff.plugins import make_plugin_manager

    return make_plugin_manager(blocked=_blocked(args))


def _cmd_plugins(args: argparse.Namespace) -> int:
    from polydiff import plugin_commands as pc

    action = args.plugins_action or "list"
    if action == "list":
        print(pc.list_plugins(_manager(args), show_all=args.all, as_json=args.json))
    elif action == "info":
        print(pc.plugin_info(_manager(args), args.name))
    elif action == "install":
        return pc.install_plugin(args.name)
    elif action == "check":
        return pc.check_plugin_command(args.name)
    elif action == "new":
        print(f"plugin skeleton written to {pc.new_plugin(args.name, Path(args.dir))}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from polydiff import runs

    if args.resume:
        if args.config or args.overrides:
            raise PolydiffError("--resume RUN_DIR continues a run with its own config.json; "
                                "do not also pass CONFIG.toml or --set")
        runs.resume_run(args.resume, manager=_manager(args))
        return 0
    if not args.config:
        raise PolydiffError("train needs CONFIG.toml (or --resume RUN_DIR); e.g. polydiff train examples/toy_gmm.toml")
    runs.train_from_file(args.config, args.overrides, run_dir=args.run_dir, manager=_manager(args))
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from polydiff.runs import sample_run

    sample_run(args.run_dir, n=args.n, sampler=args.sampler, steps=args.steps, grid=args.grid,
               guidance_scale=args.guidance_scale, seed=args.seed, out=args.out, manager=_manager(args),
               inpaint=args.inpaint)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from polydiff.runs import evaluate_run

    evaluate_run(args.run_dir, n=args.n, sampler=args.sampler, steps=args.steps, seed=args.seed,
                 manager=_manager(args))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from polydiff.compare import compare_command

    return compare_command(args.grid, args.out, manager=_manager(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from polydiff.report import run_demo

    _, results = run_demo(args.out, steps=args.steps, manager=_manager(args))
    failed = [r.modality for r in results if r.error]
    if failed:
        print(f"polydiff: demo failed for {', '.join(failed)} (see the report)", file=sys.stderr)
    return 1 if failed or not results else 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_plugin_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("-p", dest=dest, action="append", metavar="no:NAME",
                        help="block the plugin NAME (repeatable)")


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_positive, help="number of samples")
    parser.add_argument("--sampler", help="a registered sampler (default: the run's [sampling] sampler)")
    parser.add_argument("--steps", type=_positive, help="sampler steps (default: the run's [sampling] steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default 0)")


def _add_plugins_parser(sub) -> None:
    parser = sub.add_parser("plugins", help="list, inspect, install, check or create plugins")
    parser.set_defaults(func=_cmd_plugins, all=False, json=False)
    actions = parser.add_subparsers(dest="plugins_action", metavar="ACTION")
    listing = actions.add_parser("list", help="installed plugins and their components")
    listing.add_argument("--all", action="store_true", help="also list registry.toml plugins not installed")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("info", "one plugin's components and status"),
                       ("install", "install a plugin listed in registry.toml"),
                       ("check", "run the conformance kit on an installed plugin")):
        actions.add_parser(name, help=text).add_argument("name", metavar="NAME")
    new = actions.add_parser("new", help="write a plugin skeleton that passes the conformance kit")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--dir", default=".", help="parent folder of the new plugin (default .)")


def _add_run_parsers(sub) -> None:
    train = sub.add_parser("train", help="train an experiment config")
    train.add_argument("config", nargs="?", metavar="CONFIG.toml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set training.steps=100 (repeatable)")
    train.add_argument("--run-dir", help="the run folder (default: <run_root>/<name>-<timestamp>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    _add_plugin_option(train, "sub_plugin_options")
    train.set_defaults(func=_cmd_train)
    sample = sub.add_parser("sample", help="sample from a trained run")
    sample.add_argument("run_dir", metavar="RUN_DIR")
    _add_sampling_options(sample)
    sample.set_defaults(n=64)
    sample.add_argument("--grid", help="time grid: uniform, karras or logsnr")
    sample.add_argument("--guidance-scale", type=float, help="classifier-free guidance weight")
    sample.add_argument("--out", help="output folder (default RUN_DIR/samples/cli-<timestamp>)")
    sample.add_argument("--inpaint", metavar="FILE.safetensors",
                        help="known values <field> and masks <field>.mask (1 = known) to keep; the rest is sampled")
    sample.set_defaults(func=_cmd_sample)
    evaluate = sub.add_parser("evaluate", help="sample and compute metrics for a trained run")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    _add_sampling_options(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``polydiff`` argument parser."""
    from polydiff import __version__

    parser = argparse.ArgumentParser(prog="polydiff", description="One diffusion core, many domains.")
    parser.add_argument("--version", action="version", version=f"polydiff {__version__}")
    _add_plugin_option(parser, "plugin_options")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_plugins_parser(sub)
    _add_run_parsers(sub)
    compare = sub.add_parser("compare", help="train and evaluate a grid of configs; tables and plots")
    compare.add_argument("grid", metavar="GRID.toml")
    compare.add_argument("--out", help="output folder (default runs/compare-<timestamp>)")
    compare.set_defaults(func=_cmd_compare)
    demo = sub.add_parser("demo", help="every installed plugin at a small budget, one report")
    demo.add_argument("--out", help="report folder (default ./demo-report-<timestamp>)")
    demo.add_argument("--steps", type=_positive, help="training steps per demo (default: each demo's own)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(func(args) or 0)
    except PolydiffError as exc:
        if os.environ.get("POLYDIFF_DEBUG", "") == "1":
            raise
        print(f"polydiff: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("polydiff: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polydiff`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return _run(args.func, args)
