"""TOML experiment configs, validated with messages that name the key and the allowed values.

A config has six tables. Keys not listed in a table's schema are errors, except in
``[modality]``, ``[denoiser]`` and ``[corruption]``, whose extra keys are options passed
to the registered factory (the factory then reports what it does not accept).

.. code-block:: toml

    [experiment]
    name = "toy-gmm"        # run folder prefix
    seed = 0
    [modality]
    name = "toy"            # a registered modality
    dataset = "gmm8"        # options for the modality factory
    [corruption]
    name = "gaussian"
    schedule = "edm"        # a registered schedule (gaussian only)
    [denoiser]
    name = "mlp"
    width = 256
    [training]
    steps = 2000
    [sampling]
    sampler = "dpmpp_2m"
    steps = 20
    [evaluation]
    n_samples = 2000

``--set training.steps=100`` style overrides are applied before validation; values are
parsed as TOML literals (``3``, ``1e-3``, ``true``, ``"edm"``, ``[1, 2]``) and fall back to
plain strings.
"""
from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from polydiff.errors import ConfigError

_ANY = object()

SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    # table -> key -> (type or tuple of allowed values, default)
    "experiment": {
        "name": (str, None),
        "seed": (int, 0),
        "run_root": (str, "runs"),
        "device": (("auto", "cpu", "cuda"), "auto"),
    },
    "modality": {"name": (str, None)},
    "corruption": {"name": (str, "gaussian"), "schedule": (str, None), "schedule_options": (dict, {}),
                   "fields": (dict, {})},
    "denoiser": {"name": (str, "mlp")},
    "training": {
        "steps": (int, 1000),
        "batch_size": (int, 256),
        "lr": (float, 1e-3),
        "weight_decay": (float, 0.0),
        "betas": (list, [0.9, 0.999]),
        "warmup_steps": (int, 0),
        "lr_schedule": (("cosine", "constant"), "cosine"),
        "min_lr_ratio": (float, 0.0),
        "grad_clip": (float, 1.0),
        "accumulate": (int, 1),
        "ema_decay": (float, 0.999),
        "precision": (("auto", "fp32", "bf16"), "auto"),
        "compile": (bool, False),
        "log_every": (int, 50),
        "eval_every": (int, 0),
        "checkpoint_every": (int, 500),
        "num_workers": (int, 0),
        "cond_dropout": (float, 0.1),
        "progress": (bool, True),
    },
    "sampling": {
        "sampler": (str, "dpmpp_2m"),
        "steps": (int, 20),
        "grid": (str, None),
        "n": (int, 512),
        "batch_size": (int, 4096),
        "guidance_scale": (float, 1.0),
        "options": (dict, {}),
        "use_ema": (bool, True),
    },
    "evaluation": {
        "metrics": (list, None),
        "n_samples": (int, 1000),
        "split": (str, "validation"),
    },
}
OPEN_TABLES = ("modality", "corruption", "denoiser")
REQUIRED = {("modality", "name")}


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=2)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``table.key=value`` overrides applied (dotted paths nest)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.steps=100")
        path, text = item.split("=", 1)
        keys = [k.strip() for k in path.split(".") if k.strip()]
        if len(keys) < 2:
            raise ConfigError(f"--set {item!r}: the key must name a table and a key, e.g. training.steps; "
                              f"tables are {sorted(SCHEMA)}")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a table")
        node[keys[-1]] = _parse_value(text.strip())
    return out


def _check_type(table: str, key: str, value: Any, kind: Any, source: str) -> Any:
    where = f"{source}: [{table}] {key}"
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{where} = {value!r} is not allowed; allowed values: {list(kind)}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where} = {value!r} has type {type(value).__name__}; expected {kind.__name__}")
    return value


def validate(raw: Mapping[str, Any], *, source: str = "config") -> dict[str, dict[str, Any]]:
    """Check a raw config mapping and fill in defaults.

    Returns:
        ``{table: {key: value}}`` with every table of ``SCHEMA`` present.

    Raises:
        ConfigError: naming the source, table, key, bad value and what is allowed.
    """
    unknown_tables = sorted(set(raw) - set(SCHEMA))
    if unknown_tables:
        hint = _did_you_mean(unknown_tables[0], SCHEMA)
        raise ConfigError(f"{source}: unknown table(s) {unknown_tables}; allowed tables: {list(SCHEMA)}.{hint}")
    out: dict[str, dict[str, Any]] = {}
    for table, schema in SCHEMA.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: [{table}] must be a table, got {given!r}")
        values = {k: copy.deepcopy(default) for k, (_, default) in schema.items()}
        for key, value in given.items():
            if key in schema and value is None and schema[key][1] is None:
                values[key] = None  # "unset": validating a validated config changes nothing
            elif key in schema:
                values[key] = _check_type(table, key, value, schema[key][0], source)
            elif table in OPEN_TABLES:
                values[key] = value
            else:
                raise ConfigError(f"{source}: unknown key [{table}] {key!r}; allowed keys: {sorted(schema)}."
                                  + _did_you_mean(key, schema))
        out[table] = values
    for table, key in REQUIRED:
        if out[table][key] is None:
            raise ConfigError(f"{source}: [{table}] {key} is required, e.g. [{table}] {key} = \"toy\" "
                              f"(`polydiff plugins list` shows the installed modalities)")
    _check_ranges(out, source)
    if out["experiment"]["name"] is None:
        out["experiment"]["name"] = out["modality"]["name"]
    return out


def _check_ranges(cfg: dict[str, dict[str, Any]], source: str) -> None:
    positive = [("training", "steps"), ("training", "batch_size"), ("training", "accumulate"),
                ("sampling", "steps"), ("sampling", "n"), ("sampling", "batch_size"),
                ("evaluation", "n_samples")]
    for table, key in positive:
        if cfg[table][key] <= 0:
            raise ConfigError(f"{source}: [{table}] {key} = {cfg[table][key]} must be positive")
    t = cfg["training"]
    if not 0.0 <= t["ema_decay"] < 1.0:
        raise ConfigError(f"{source}: [training] ema_decay = {t['ema_decay']} must be in [0, 1)")
    if not 0.0 <= t["cond_dropout"] < 1.0:
        raise ConfigError(f"{source}: [training] cond_dropout = {t['cond_dropout']} must be in [0, 1)")
    if t["lr"] <= 0:
        raise ConfigError(f"{source}: [training] lr = {t['lr']} must be positive")
    if len(t["betas"]) != 2:
        raise ConfigError(f"{source}: [training] betas = {t['betas']} must be two numbers")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Read, override and validate a TOML experiment config.

    Raises:
        ConfigError: for a missing file, malformed TOML (with line and column), or a bad key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return validate(apply_overrides(raw, overrides), source=str(path))


def config_from_dict(raw: Mapping[str, Any], overrides: Iterable[str] = (), *,
                     source: str = "config") -> dict[str, dict[str, Any]]:
    """As ``load_config`` for a config already in memory (demo configs, tests)."""
    return validate(apply_overrides(dict(raw), overrides), source=source)
