"""Experiment config validation: every message names the file, key, value and what is allowed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from polydiff.config import SCHEMA, apply_overrides, config_from_dict, load_config, validate
from polydiff.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"modality": {"name": "toy"}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_defaults_filled_and_name_from_modality():
    cfg = config_from_dict(MINIMAL)
    assert set(cfg) == set(SCHEMA)
    assert cfg["training"]["steps"] == SCHEMA["training"]["steps"][1]
    assert cfg["experiment"]["name"] == "toy"


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, '[modality]\nname = "toy"\n[training]\nsteps = = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(r"line 4\b", message)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml.*does not exist"):
        load_config(tmp_path / "nope.toml")


def test_unknown_table_names_it_and_allowed_tables(tmp_path):
    path = write(tmp_path, '[modality]\nname = "toy"\n[trainig]\nsteps = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "trainig" in message and "'training'" in message and str(path) in message
    assert "Did you mean 'training'" in message


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as info:
        config_from_dict({**MINIMAL, "training": {"stpes": 3}}, source="exp.toml")
    message = str(info.value)
    assert "[training] 'stpes'" in message
    assert "'batch_size'" in message and "'steps'" in message
    assert "Did you mean 'steps'" in message
    assert message.startswith("exp.toml")


def test_open_tables_accept_factory_options():
    cfg = config_from_dict({"modality": {"name": "toy", "dataset": "gmm8"}, "denoiser": {"width": 32}})
    assert cfg["modality"]["dataset"] == "gmm8"
    assert cfg["denoiser"] == {"name": "mlp", "width": 32}


@pytest.mark.parametrize("table, key, value, expected", [
    ("training", "steps", "ten", "expected int"),
    ("training", "steps", 1.5, "expected int"),
    ("training", "compile", 1, "expected bool"),
    ("experiment", "seed", True, "expected int"),
    ("sampling", "sampler", 3, "expected str"),
])
def test_wrong_type_names_key_value_and_type(table, key, value, expected):
    with pytest.raises(ConfigError) as info:
        config_from_dict({**MINIMAL, table: {key: value}})
    message = str(info.value)
    assert f"[{table}] {key}" in message and repr(value) in message and expected in message


def test_int_is_accepted_for_float_keys():
    cfg = config_from_dict({**MINIMAL, "training": {"lr": 1}})
    assert cfg["training"]["lr"] == 1.0 and isinstance(cfg["training"]["lr"], float)


def test_bad_enum_lists_allowed_values():
    with pytest.raises(ConfigError) as info:
        config_from_dict({**MINIMAL, "experiment": {"device": "tpu"}})
    message = str(info.value)
    assert "'tpu'" in message and "['auto', 'cpu', 'cuda']" in message


@pytest.mark.parametrize("key, value, needle", [
    ("steps", 0, "must be positive"), ("ema_decay", 1.0, "in [0, 1)"), ("lr", -1e-3, "must be positive"),
    ("betas", [0.9], "two numbers"),
])
def test_out_of_range_values(key, value, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config_from_dict({**MINIMAL, "training": {key: value}})


def test_missing_modality_name():
    with pytest.raises(ConfigError, match=r"\[modality\] name is required"):
        validate({"training": {"steps": 3}})


def test_set_overrides_parse_toml_literals():
    raw = apply_overrides(MINIMAL, ["training.steps=30", "training.lr=1e-3", "training.compile=true",
                                    "sampling.sampler=euler", 'experiment.name="run a"', "training.betas=[0.8, 0.9]",
                                    "corruption.fields.x.schedule=flow"])
    assert raw["training"] == {"steps": 30, "lr": 1e-3, "compile": True, "betas": [0.8, 0.9]}
    assert raw["sampling"]["sampler"] == "euler"
    assert raw["experiment"]["name"] == "run a"
    assert raw["corruption"]["fields"]["x"]["schedule"] == "flow"
    assert MINIMAL == {"modality": {"name": "toy"}}, "overrides must not modify their input"


@pytest.mark.parametrize("item, needle", [
    ("training.steps", "expected KEY=VALUE"),
    ("steps=3", "must name a table and a key"),
    ("modality.name.x=3", "'name' is not a table"),
])
def test_bad_set_items(item, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        apply_overrides(MINIMAL, [item])


def test_set_override_is_validated(tmp_path):
    path = write(tmp_path, '[modality]\nname = "toy"\n')
    assert load_config(path, ["training.steps=7"])["training"]["steps"] == 7
    with pytest.raises(ConfigError, match=r"\[training\] steps = 'abc'"):
        load_config(path, ["training.steps=abc"])


@pytest.mark.parametrize("name", ["toy_gmm.toml", "toy_flow.toml", "toy_vp.toml"])
def test_examples_are_valid_configs(name):
    cfg = load_config(ROOT / "examples" / name)
    assert cfg["modality"]["name"] == "toy"


def test_every_schema_key_is_documented_in_the_user_guide():
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    missing = [f"{table}.{key}" for table, keys in SCHEMA.items() for key in keys
               if not re.search(rf"`{table}\.{key}`", guide)]
    assert not missing, f"docs/user-guide.md does not document {missing}"


def test_validating_a_validated_config_changes_nothing():
    once = config_from_dict(MINIMAL)
    assert once["sampling"]["grid"] is None and once["evaluation"]["metrics"] is None
    assert config_from_dict(once) == once
