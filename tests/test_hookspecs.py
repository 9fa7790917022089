"""Every hookspec follows the template of STYLE.md section 15, and its example works."""
from __future__ import annotations

import inspect
import re
import textwrap
import types

import pytest

import polydiff
from polydiff import hookspecs

SECTIONS = ("Args:", "Returns:", "Call semantics:", "Example:", "Since:")
REGISTRATION = {"polydiff_modalities": "modality", "polydiff_schedules": "schedule",
                "polydiff_corruptions": "corruption", "polydiff_denoisers": "denoiser",
                "polydiff_samplers": "sampler", "polydiff_metrics": "metric"}


def hook_functions() -> list[types.FunctionType]:
    """Every hookspec of ``polydiff.hookspecs``, in source order."""
    found = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, f"{hookspecs.PROJECT_NAME}_spec")]
    return sorted(found, key=lambda f: f.__code__.co_firstlineno)


def example_code(function: types.FunctionType) -> str:
    """The code block of the Example section."""
    doc = inspect.getdoc(function) or ""
    block = doc.split("Example:", 1)[1].split("Since:", 1)[0]
    block = block.split(".. code-block:: python", 1)[-1]
    return textwrap.dedent(block).strip("\n")


HOOKS = hook_functions()


def test_hooks_found():
    assert {f.__name__ for f in HOOKS} >= set(REGISTRATION) | {"polydiff_train_start", "polydiff_train_step_end",
                                                             "polydiff_evaluate", "polydiff_train_end"}


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_prefixed_and_annotated(hook):
    assert hook.__name__.startswith("polydiff_")
    signature = inspect.signature(hook)
    assert signature.return_annotation is not inspect.Signature.empty, f"{hook.__name__} lacks a return annotation"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, f"{hook.__name__}({parameter.name}) lacks a type"


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_docstring_has_every_section(hook):
    doc = inspect.getdoc(hook) or ""
    positions = [doc.find(section) for section in SECTIONS]
    assert all(p > 0 for p in positions), f"{hook.__name__}: missing {[s for s, p in zip(SECTIONS, positions) if p < 0]}"
    assert positions == sorted(positions), f"{hook.__name__}: sections out of order"
    assert re.search(r"Since: \d+\.\d+", doc), f"{hook.__name__}: 'Since:' needs a version"
    for parameter in inspect.signature(hook).parameters:
        assert f"{parameter}:" in doc.split("Returns:")[0], f"{hook.__name__}: argument {parameter!r} undocumented"


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_example_compiles_and_implements_the_hook(hook):
    code = example_code(hook)
    compile(code, f"<example of {hook.__name__}>", "exec")
    assert f"def {hook.__name__}(" in code and "@polydiff.hookimpl" in code


class _Toy2D:
    """The modality the polydiff_modalities example refers to (the example leaves it out)."""

    def __init__(self, **options):
        self.name = "toy2d"


@pytest.mark.parametrize("hook", [f for f in HOOKS if f.__name__ in REGISTRATION], ids=lambda f: f.__name__)
def test_registration_example_runs_as_a_temporary_plugin(hook, temporary_plugin):
    module = types.ModuleType(f"example_{hook.__name__}")
    module.Toy2D = _Toy2D
    exec(compile(example_code(hook), module.__name__, "exec"), module.__dict__)
    manager = temporary_plugin(module, name="example")
    assert manager.plugins["example"].error is None, manager.plugins["example"].error
    kind = REGISTRATION[hook.__name__]
    names = manager.plugins["example"].components[kind]
    assert names, f"the example of {hook.__name__} registered no {kind}"
    for name in names:
        spec = manager.registry.get(kind, name)
        assert spec.plugin == "example" and not spec.problems()
