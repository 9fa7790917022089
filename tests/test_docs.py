"""docs/plugin-hooks.md is the hookspec docstrings, rendered (datasette's tests/test_docs.py idea).

Regenerate after changing a hookspec with ``python tests/test_docs.py``.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from polydiff import hookspecs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "plugin-hooks.md"
HEADER = """# Plugin hook reference

Generated from the docstrings of `platform/polydiff/hookspecs.py` by `python tests/test_docs.py`;
`tests/test_docs.py` fails when the two differ. Implement any subset of these hooks with
`@polydiff.hookimpl` in the module your entry point names (see writing-plugins.md).
An implementation may take fewer arguments than the spec lists.

Conventions: t in [0, 1], t = 0 is data, t = 1 is the prior; a State maps field name ->
tensor of shape `(B, *field_shape)`; component names are lowercase and unique across plugins.
"""


def hooks() -> list:
    found = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, f"{hookspecs.PROJECT_NAME}_spec")]
    return sorted(found, key=lambda f: f.__code__.co_firstlineno)


def signature_text(function) -> str:
    """``name(arg: Type, ...) -> Return`` with the annotations as written in the source."""
    return f"{function.__name__}{inspect.signature(function)}".replace("'", "")


def render() -> str:
    """The whole reference page."""
    parts = [HEADER]
    for function in hooks():
        doc = inspect.getdoc(function) or ""
        parts.append(f"## `{function.__name__}`\n\n```python\n{signature_text(function)}\n```\n\n{doc}\n")
    return "\n".join(parts)


def test_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == render(), "docs/plugin-hooks.md is stale: run python tests/test_docs.py"


def test_every_hook_documented_with_its_exact_signature():
    text = REFERENCE.read_text(encoding="utf-8")
    for function in hooks():
        assert f"## `{function.__name__}`" in text
        assert f"```python\n{signature_text(function)}\n```" in text


def test_guides_mention_every_hook_and_the_kit():
    guide = (ROOT / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    testing = (ROOT / "docs" / "testing-plugins.md").read_text(encoding="utf-8")
    for function in hooks():
        assert function.__name__ in guide or function.__name__ in testing or "plugin-hooks.md" in guide
    for name in ("PluginConformance", "expected_failures", "check_plugin", "temporary_plugin", "budget"):
        assert name in testing, f"docs/testing-plugins.md does not explain {name}"
    for step in ("polydiff plugins new", "polydiff plugins check", "polydiff.plugins", "registry.toml"):
        assert step in guide, f"docs/writing-plugins.md does not cover {step!r}"


def test_no_scheduler_vocabulary_in_docs():
    for path in (ROOT / "docs").glob("*.md"):
        assert not re.search(r"\bscheduler", path.read_text(encoding="utf-8"), re.I), f"{path.name} says 'scheduler'"


if __name__ == "__main__":
    REFERENCE.write_text(render(), encoding="utf-8")
    print(f"wrote {REFERENCE}", file=sys.stderr)
