"""The conformance checks: one plain function per property, ``check_<what>(component, ctx)``.

A check returns None when the property holds and raises (``AssertionError`` or a polydiff
error) with a message naming the component and what is wrong when it does not.
``polydiff.testing.conformance.iter_checks`` decides which checks apply to a component
from what its spec declares (sklearn's ``_yield_all_checks`` idea); the checks themselves
never special-case a concrete component.

The kit sees components only through the public registry of a plugin manager, exactly as
the experiment builder does.
"""
from __future__ import annotations

import inspect
import math
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import polydiff
from polydiff.testing.budgets import Budget
from polydiff.testing.problems import sampler_family, sampler_problem

SPACE_KINDS = ("continuous", "bounded", "discrete")


@dataclass(frozen=True)
class Component:
    """What one check runs against.

    Attributes:
        kind: ``"plugin"`` or a spec kind (``"modality"``, ``"corruption"``, ...).
        name: the plugin or component name.
        spec: the registered spec (None for ``kind == "plugin"``).
        partner: for denoisers, the corruption spec it is paired with.
        modality: for denoisers, the modality whose data the pair trains on.
    """

    kind: str
    name: str
    spec: Any = None
    partner: Any = None
    modality: str = ""

    @property
    def id(self) -> str:
        """The id used in test names, e.g. ``denoiser[mlp,corruption=gaussian]``."""
        if self.partner is not None:
            return f"{self.kind}[{self.name},corruption={self.partner.name}]"
        return f"{self.kind}[{self.name}]"


@dataclass
class CheckContext:
    """Shared resources of one run of the kit.

    Attributes:
        manager: the plugin manager whose registry holds the components.
        budget: the sizes every check uses.
        tmp_dir: a private folder for artefacts, run folders and checkpoints.
        seed: base seed of every generator a check makes.
        cache: results shared between checks of one run (tiny training runs).
    """

    manager: polydiff.PluginManager
    budget: Budget
    tmp_dir: Path
    seed: int = 0
    cache: dict[Any, Any] = field(default_factory=dict)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded with ``seed + offset``."""
        return torch.Generator().manual_seed(self.seed + offset)

    def folder(self, name: str) -> Path:
        """A sub-folder of ``tmp_dir`` (created)."""
        path = self.tmp_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# ---------------------------------------------------------------------------
# Helpers shared by the checks
# ---------------------------------------------------------------------------

def example_space(kind: str) -> polydiff.Space:
    """A small space of ``kind`` used to bind corruption processes: shape (4,)."""
    if kind == "continuous":
        return polydiff.Continuous((4,))
    if kind == "bounded":
        return polydiff.Bounded((4,), low=-1.0, high=1.0)
    return polydiff.Discrete((4,), vocab_size=5)


def example_data(space: polydiff.Space, n: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` samples of ``space``, shape ``(n, *space.shape)``: N(0, 1), uniform in the box, or uniform ids."""
    if space.kind == "discrete":
        return torch.randint(space.vocab_size, (n, *space.shape), generator=generator)
    if space.kind == "bounded":
        u = torch.rand((n, *space.shape), generator=generator, dtype=dtype)
        return space.low + (space.high - space.low) * u
    return torch.randn((n, *space.shape), generator=generator, dtype=dtype)


def build_corruption(spec: polydiff.CorruptionSpec, space: polydiff.Space, ctx: CheckContext,
                     **options: Any) -> polydiff.Corruption:
    """Call a corruption factory as the experiment builder does (``field`` and ``registry`` when accepted)."""
    params = inspect.signature(spec.factory).parameters
    accepts_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "field" in params or accepts_kw:
        options.setdefault("field", "x")
    if "registry" in params or accepts_kw:
        options.setdefault("registry", ctx.manager.registry)
    return spec.factory(space, **options)


def pinned(process: polydiff.Corruption, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``{"source": x1}`` for a bridge process (an independent draw of the field's space), else ``{}``."""
    if process.family != "bridge":
        return {}
    return {"source": example_data(process.space, x0.shape[0], generator, dtype=x0.dtype)}


def build_modality(name: str, ctx: CheckContext, **options: Any) -> Any:
    """The modality ``name`` built with its default options (``dataset="gmm8"`` for ``toy``)."""
    if name == "toy":
        options.setdefault("dataset", "gmm8")
    return ctx.manager.registry.get("modality", name).factory(**options)


def data_batch(modality: Any, n: int, split: str = "train", start: int = 0) -> dict[str, torch.Tensor]:
    """Stack items ``start .. start + n`` of a modality's data set into a batch State."""
    dataset = modality.dataset(split)
    size = len(dataset)
    assert size > 0, f"modality {modality.name!r}: data set split {split!r} is empty"
    items = [dataset[(start + i) % size] for i in range(n)]
    return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in items[0]}


def all_spaces(modality: Any) -> dict[str, polydiff.Space]:
    """Diffused and conditioning fields of a modality together."""
    return {**modality.spaces, **(getattr(modality, "cond_spaces", {}) or {})}


# ---------------------------------------------------------------------------
# Always: the plugin itself
# ---------------------------------------------------------------------------

def check_entry_point_loads(component: Component, ctx: CheckContext) -> None:
    """The plugin loaded, registered under its entry-point name and left no unknown hooks.

    A plugin the manager recorded as broken (import error, raising registration hook,
    duplicate name, unknown ``polydiff_*`` hook) fails here with the recorded error.
    """
    plugins = ctx.manager.plugins
    assert component.name in plugins, (
        f"plugin {component.name!r} is not installed; installed plugins: {sorted(plugins)}. "
        f"Check the [project.entry-points.\"polydiff.plugins\"] table of its pyproject.toml and reinstall.")
    info = plugins[component.name]
    assert info.error is None, f"plugin {component.name!r} ({info.distribution}) is broken:\n{info.error}"
    assert info.hooks, f"plugin {component.name!r} implements no polydiff hooks"
    unknown = [h for h in info.hooks if not h.startswith("polydiff_")]
    assert not unknown, f"plugin {component.name!r} registered non-polydiff hooks {unknown}"


def check_specs_valid(component: Component, ctx: CheckContext) -> None:
    """Every spec of the plugin is valid and its name resolves to that very spec (no clash).

    Names are lowercase, summaries non-empty, factories callable (``Spec.problems``); a
    name also registered by another plugin raises ``DuplicateNameError`` here.
    """
    registry = ctx.manager.registry
    for spec in registry.of_plugin(component.name):
        problems = spec.problems()
        assert not problems, f"{spec.kind} {spec.name!r}: " + "; ".join(problems)
        assert registry.get(spec.kind, spec.name) is spec, (
            f"{spec.kind} {spec.name!r} of plugin {component.name!r} resolves to another plugin's spec")


_SIDE_EFFECT_PROBE = textwrap.dedent("""
    import importlib, sys
    import pluggy
    events = []
    def audit(event, args):
        if event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
            if not str(args[0]).endswith((".pyc", ".pyc.tmp")) and "__pycache__" not in str(args[0]):
                events.append(f"opened {args[0]!r} for writing")
        elif event in ("socket.connect", "socket.bind", "subprocess.Popen", "os.system"):
            events.append(f"{event} {args[:2]!r}")
    registered = []
    original = pluggy.PluginManager.register
    def register(self, plugin, name=None):
        registered.append(name or repr(plugin))
        return original(self, plugin, name)
    pluggy.PluginManager.register = register
    sys.addaudithook(audit)
    importlib.import_module(sys.argv[1])
    problems = events + [f"registered plugin {r!r} with a plugin manager" for r in registered]
    print("\\n".join(problems))
""")


def _plugin_module(component: Component, ctx: CheckContext) -> str | None:
    info = ctx.manager.plugins.get(component.name)
    if info is not None and info.builtin:
        return "polydiff.builtin." + component.name.split(".", 1)[1]
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group="polydiff.plugins"):
        if ep.name == component.name:
            return ep.module
    return None


def check_no_import_side_effects(component: Component, ctx: CheckContext) -> None:
    """Importing the plugin module writes no files, opens no sockets, starts no processes
    and registers nothing: discovery must stay cheap and safe (``polydiff plugins list``
    imports every plugin).

    Runs the import in a fresh interpreter with an audit hook (PEP 578).
    """
    module = _plugin_module(component, ctx)
    if module is None:
        return  # registered in-process (temporary plugin): there is no module import to probe
    proc = subprocess.run([sys.executable, "-c", _SIDE_EFFECT_PROBE, module], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"importing {module!r} failed:\n{proc.stderr[-3000:]}"
    problems = [line for line in proc.stdout.splitlines() if line.strip()]
    assert not problems, f"importing plugin module {module!r} has side effects: " + "; ".join(problems)


# ---------------------------------------------------------------------------
# Modalities
# ---------------------------------------------------------------------------

def check_spaces_declared(component: Component, ctx: CheckContext) -> None:
    """The modality declares its fields: a non-empty ``spaces`` mapping of polydiff spaces,
    a ``cond_spaces`` mapping (may be empty) with distinct field names, and its own name."""
    modality = build_modality(component.name, ctx)
    assert isinstance(modality, polydiff.Modality), (
        f"modality {component.name!r}: {type(modality).__name__} lacks part of polydiff.Modality "
        f"(name, spaces, cond_spaces, dataset, decode, encode, write_artefacts)")
    assert modality.name == component.name, f"modality registered as {component.name!r} calls itself {modality.name!r}"
    spaces, cond = modality.spaces, modality.cond_spaces or {}
    assert isinstance(spaces, Mapping) and spaces, f"modality {component.name!r}: spaces must be a non-empty mapping"
    for name, space in {**spaces, **cond}.items():
        assert isinstance(name, str) and name, f"modality {component.name!r}: field names must be strings"
        assert getattr(space, "kind", None) in SPACE_KINDS, (
            f"modality {component.name!r}: field {name!r} has {space!r}, not a polydiff Continuous/Bounded/Discrete")
    overlap = sorted(set(spaces) & set(cond))
    assert not overlap, f"modality {component.name!r}: fields {overlap} are both diffused and conditioning"


def check_dataset_matches_spaces(component: Component, ctx: CheckContext) -> None:
    """A stacked batch of each split has exactly the declared fields with the declared dtype,
    shape and range (``polydiff.validate_state``); a dataset with a batched fetch
    (``__getitems__``, as ``polydiff.FieldsDataset``) returns the same batch as its items stacked."""
    modality = build_modality(component.name, ctx)
    for split in ("train", "validation"):
        batch = data_batch(modality, ctx.budget.batch, split)
        polydiff.validate_state(batch, all_spaces(modality), where=f"modality {component.name!r} {split} batch")
        dataset = modality.dataset(split)
        if getattr(dataset, "__getitems__", None):
            indices = [i % len(dataset) for i in range(ctx.budget.batch)]
            fetched = polydiff.stack_items(dataset, indices[::-1])
            stacked = data_batch(modality, ctx.budget.batch, split)
            assert sorted(fetched) == sorted(stacked), (
                f"modality {component.name!r}: {split} __getitems__ gives fields {sorted(fetched)}, "
                f"its items {sorted(stacked)}")
            for name, value in stacked.items():
                assert torch.equal(fetched[name], value.flip(0)), (
                    f"modality {component.name!r}: {split} __getitems__ field {name!r} differs from its items stacked")


def check_encode_decode_roundtrip(component: Component, ctx: CheckContext) -> None:
    """``encode(decode(x))`` gives ``x`` back: exactly for discrete fields, within 1% of the
    data scale for continuous ones (room for quantisation such as 8-bit pixels)."""
    modality = build_modality(component.name, ctx)
    batch = data_batch(modality, ctx.budget.batch)
    x = {f: batch[f] for f in modality.spaces}
    back = modality.encode(modality.decode(x))
    polydiff.validate_state(back, modality.spaces, where=f"modality {component.name!r} encode(decode(x))")
    for name, space in modality.spaces.items():
        if space.kind == "discrete":
            assert torch.equal(back[name].long(), x[name].long()), f"field {name!r}: token ids changed in the round trip"
            continue
        scale = max(1.0, float(x[name].abs().max()))
        err = float((back[name].double() - x[name].double()).abs().max())
        assert err <= 1e-2 * scale, f"field {name!r}: round-trip error {err:.3g} exceeds 1% of the data scale {scale:.3g}"


def check_artefact_written(component: Component, ctx: CheckContext) -> None:
    """``write_artefacts`` writes at least one non-empty file inside the folder it is given."""
    modality = build_modality(component.name, ctx)
    batch = data_batch(modality, ctx.budget.batch)
    out_dir = ctx.folder(f"artefacts-{component.name}")
    paths = modality.write_artefacts({f: batch[f] for f in modality.spaces}, out_dir)
    assert paths, f"modality {component.name!r}: write_artefacts returned no paths"
    for path in map(Path, paths):
        assert path.is_file(), f"modality {component.name!r}: artefact {path} does not exist"
        assert path.stat().st_size > 0, f"modality {component.name!r}: artefact {path} is empty"
        assert out_dir.resolve() in path.resolve().parents, f"artefact {path} is outside the run folder {out_dir}"


def check_missing_data_message(component: Component, ctx: CheckContext) -> None:
    """With its data absent, the modality raises ``DataMissingError`` saying what to install
    or generate (DESIGN section 10: nothing is downloaded at run time).

    Applies to modalities that implement the optional ``check_data(root)`` method, which
    looks for the data under ``root`` (an empty folder here).
    """
    modality = build_modality(component.name, ctx)
    empty = ctx.folder(f"no-data-{component.name}")
    try:
        modality.check_data(empty)
    except polydiff.DataMissingError as exc:
        text = str(exc).lower()
        assert any(word in text for word in ("install", "generate")), (
            f"modality {component.name!r}: DataMissingError message {str(exc)!r} does not say what to install or generate")
        return
    raise AssertionError(f"modality {component.name!r}: check_data({empty}) on an empty folder did not raise DataMissingError")


# ---------------------------------------------------------------------------
# Corruption processes
# ---------------------------------------------------------------------------

def _times(n: int, t_start: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` times spread over (0.02, 0.98 * t_start), shape ``(n,)``."""
    return (0.02 + 0.96 * torch.rand(n, generator=generator)) * t_start


def _check_in_space(x: torch.Tensor, space: polydiff.Space, what: str, *, allow_mask: bool = True) -> None:
    assert tuple(x.shape[1:]) == space.shape, f"{what}: shape {tuple(x.shape)}, expected (B, {space.shape})"
    if space.kind == "discrete":
        high = space.vocab_size + (1 if allow_mask else 0)
        assert not torch.is_floating_point(x), f"{what}: expected integer token ids, got {x.dtype}"
        assert int(x.min()) >= 0 and int(x.max()) < high, f"{what}: ids outside [0, {high})"
    else:
        assert torch.isfinite(x).all(), f"{what}: contains NaN or infinite values"


def check_corrupt_shapes(component: Component, ctx: CheckContext) -> None:
    """For every space kind it accepts, ``sample_t`` gives times in [0, 1] of shape ``(B,)``
    and ``corrupt(x0, t).x_t`` has the field's shape and stays in its space (discrete
    fields may use the mask id ``vocab_size``)."""
    n, g = ctx.budget.batch, ctx.generator()
    for kind in sorted(component.spec.spaces):
        space = example_space(kind)
        process = build_corruption(component.spec, space, ctx)
        t = process.sample_t(n, generator=g)
        assert tuple(t.shape) == (n,), f"corruption {component.name!r}: sample_t({n}) has shape {tuple(t.shape)}"
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0, f"corruption {component.name!r}: times outside [0, 1]"
        x0 = example_data(space, n, g)
        out = process.corrupt(x0, _times(n, process.t_start, g), generator=g, **pinned(process, x0, g))
        _check_in_space(out.x_t, space, f"corruption {component.name!r} on {kind} x_t")


def _moments_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    std_a, std_b = a.std(0), b.std(0)
    se = (std_a**2 / len(a) + std_b**2 / len(b)).sqrt()
    gap = (a.mean(0) - b.mean(0)).abs()
    assert bool((gap <= 6 * se + 1e-6).all()), f"{what}: means differ by {gap.max().item():.3g} (> 6 standard errors)"
    ratio = std_a / std_b.clamp(min=1e-12)
    assert bool(((ratio > 0.9) & (ratio < 1.1)).all()), f"{what}: standard deviations differ, ratio {ratio.tolist()}"


def check_prior_matches_t1(component: Component, ctx: CheckContext) -> None:
    """The prior is the forward marginal at the start of sampling: ``prior(n)`` has the
    field's shape and matches ``corrupt(x0, t_start)`` in mean and standard deviation
    (continuous) or token frequencies within 0.05 total variation (discrete). Bridges get
    the same source samples x1 for both, since their prior is pinned at x1."""
    n, g = ctx.budget.n_moments, ctx.generator(1)
    for kind in sorted(component.spec.spaces):
        space = example_space(kind)
        process = build_corruption(component.spec, space, ctx)
        source = pinned(process, example_data(space, n, g), g)
        prior = process.prior(n, generator=g, **source)
        _check_in_space(prior, space, f"corruption {component.name!r} prior on {kind}")
        t = torch.full((n,), float(process.t_start))
        marginal = process.corrupt(example_data(space, n, g), t, generator=g, **source).x_t
        what = f"corruption {component.name!r} on {kind}: prior vs corrupt(x0, t_start={process.t_start:.4g})"
        if kind != "discrete":
            _moments_close(prior, marginal, what)
            continue
        bins = space.vocab_size + 1
        p = torch.bincount(prior.flatten().long(), minlength=bins).double() / prior.numel()
        q = torch.bincount(marginal.flatten().long(), minlength=bins).double() / marginal.numel()
        tv = 0.5 * float((p - q).abs().sum())
        assert tv < 0.05, f"{what}: token frequencies differ, total variation {tv:.3f}"


def check_parameterisation_roundtrip(component: Component, ctx: CheckContext) -> None:
    """In float64, the regression target of an exact example converts back to the data:
    ``predict(target(x0, corrupted), x_t, t).x0 == x0`` (and ``eps`` to the noise used).

    Applies to processes with a ``target`` method (parametrisation conversions).
    """
    n, g = ctx.budget.batch, ctx.generator(2)
    for kind in sorted(component.spec.spaces - {"discrete"}):
        space = example_space(kind)
        process = build_corruption(component.spec, space, ctx)
        x0 = example_data(space, n, g, dtype=torch.float64)
        t = _times(n, process.t_start, g).double()
        corrupted = process.corrupt(x0, t, generator=g, **pinned(process, x0, g))
        pred = process.predict(process.target(x0, corrupted), corrupted.x_t, t)
        err = float((pred.x0 - x0).abs().max())
        assert err < 1e-6, f"corruption {component.name!r} on {kind}: target -> x0 round trip error {err:.3g}"
        if pred.eps is not None and corrupted.noise is not None:
            err = float((pred.eps - corrupted.noise).abs().max())
            assert err < 1e-6, f"corruption {component.name!r} on {kind}: implied eps differs by {err:.3g}"


def _exact_prediction(x0: torch.Tensor, space: polydiff.Space) -> polydiff.Prediction:
    if space.kind == "discrete":
        probs = torch.nn.functional.one_hot(x0.long(), space.vocab_size).float()
        return polydiff.Prediction(raw=probs.log().clamp(min=-1e4), x0=probs)
    return polydiff.Prediction(raw=x0, x0=x0)


def check_reverse_step_defined(component: Component, ctx: CheckContext) -> None:
    """``reverse_step(x_t, t, s, prediction)`` runs from t to s < t (and to s = 0) and
    returns a tensor of the field's shape in its space, so the generic ancestral sampler
    can sample every process."""
    n, g = ctx.budget.batch, ctx.generator(3)
    for kind in sorted(component.spec.spaces):
        space = example_space(kind)
        process = build_corruption(component.spec, space, ctx)
        x0 = example_data(space, n, g)
        t = _times(n, process.t_start, g)
        source = pinned(process, x0, g)
        x_t = process.corrupt(x0, t, generator=g, **source).x_t
        for s in (0.5 * t, torch.zeros_like(t)):
            x_s = process.reverse_step(x_t, t, s, _exact_prediction(x0, space), generator=g, **source)
            _check_in_space(x_s, space, f"corruption {component.name!r} reverse_step on {kind}")


# ---------------------------------------------------------------------------
# Samplers, on a toy law of the family they support, with its exact denoiser
# ---------------------------------------------------------------------------

def _run_sampler(component: Component, ctx: CheckContext, seed: int, callback=None):
    g = ctx.generator(seed)
    problem = sampler_problem(sampler_family(component.spec), ctx, ctx.budget.n_samples, g)
    calls = []

    def model(x, t):
        calls.append(1)
        return problem.predict(x, t)

    grid = torch.linspace(float(problem.processes["x"].t_start), 0.0, ctx.budget.sample_steps + 1)
    out = component.spec.function(model, problem.processes, problem.prior, grid, generator=g, callback=callback,
                                  **problem.options)
    return out, problem.space, len(calls)


def check_signature_matches_protocol(component: Component, ctx: CheckContext) -> None:
    """The sampler function takes ``(model, processes, x, grid)`` positionally and
    ``generator`` and ``callback`` by keyword (``polydiff.protocols.Sampler``)."""
    params = list(inspect.signature(component.spec.function).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) >= 4, f"sampler {component.name!r}: takes positional {positional}, needs (model, processes, x, grid)"
    names = {p.name for p in params}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    for keyword in ("generator", "callback"):
        assert keyword in names or var_kw, f"sampler {component.name!r}: does not accept the keyword {keyword!r}"


def check_returns_declared_space(component: Component, ctx: CheckContext) -> None:
    """Sampling returns a ``SampleOutput`` whose state is a batch of the field's space,
    and calls ``callback(i, t, x, predictions)`` at least once."""
    seen = []
    out, space, _ = _run_sampler(component, ctx, 4, callback=lambda *args: seen.append(len(args)))
    assert isinstance(out, polydiff.SampleOutput), f"sampler {component.name!r} returned {type(out).__name__}"
    polydiff.validate_state(out.state, {"x": space}, where=f"sampler {component.name!r} output")
    assert len(out.state["x"]) == ctx.budget.n_samples, f"sampler {component.name!r}: batch size changed"
    assert seen, f"sampler {component.name!r} never called the callback"
    assert all(n == 4 for n in seen), f"sampler {component.name!r}: callback takes (i, t, x, predictions), got {seen[0]} args"


def check_seeded_determinism(component: Component, ctx: CheckContext) -> None:
    """Two runs with identically seeded generators give identical samples: all randomness
    comes from the injected generator, no global RNG or hidden state."""
    first, _, _ = _run_sampler(component, ctx, 5)
    torch.manual_seed(12345)  # the global RNG must not matter
    second, _, _ = _run_sampler(component, ctx, 5)
    assert torch.equal(first.state["x"], second.state["x"]), f"sampler {component.name!r} is not deterministic given the generator"


def check_nfe_reported(component: Component, ctx: CheckContext) -> None:
    """``SampleOutput.nfe`` is a positive int equal to the number of model calls made."""
    out, _, calls = _run_sampler(component, ctx, 6)
    assert isinstance(out.nfe, int) and out.nfe > 0, f"sampler {component.name!r}: nfe {out.nfe!r} is not a positive int"
    assert out.nfe == calls, f"sampler {component.name!r} reports nfe={out.nfe} but called the model {calls} times"


class _FakeProcess:
    """Stands in for a process of a family the sampler does not support."""

    def __init__(self, family: str) -> None:
        self.family, self.name, self.field = family, f"fake-{family}", "tokens"
        self.space = polydiff.Discrete((4,), vocab_size=5)
        self.t_start = 1.0


def check_rejects_unsupported_family(component: Component, ctx: CheckContext) -> None:
    """Given a process of a family it does not declare, the sampler raises
    ``IncompatibleSpaceError`` naming itself and the field, before calling the model."""
    family = sorted({"masked", "uniform", "reflected", "bridge", "gaussian"} - set(component.spec.families))[0]
    processes = {"tokens": _FakeProcess(family)}
    x = {"tokens": torch.zeros(2, 4, dtype=torch.long)}

    def model(x, t):
        raise AssertionError("the model must not be called with an unsupported process")

    try:
        component.spec.function(model, processes, x, torch.linspace(1.0, 0.0, 3), generator=ctx.generator())
    except polydiff.IncompatibleSpaceError as exc:
        for part in (component.name, "tokens"):
            assert part in str(exc), f"sampler {component.name!r}: the error {str(exc)!r} does not name {part!r}"
        return
    raise AssertionError(f"sampler {component.name!r} accepted a process of family {family!r}")


# ---------------------------------------------------------------------------
# Denoisers, each paired with a compatible corruption process
# ---------------------------------------------------------------------------

def _denoiser_options(spec: polydiff.DenoiserSpec, budget: Budget) -> dict[str, Any]:
    """``width`` and ``depth`` of the budget where the factory takes them, then the spec's ``kit_options``."""
    params = inspect.signature(spec.factory).parameters
    sized = {key: value for key, value in (("width", budget.width), ("depth", budget.depth)) if key in params}
    return {**sized, **dict(getattr(spec, "kit_options", {}) or {})}


def kit_config(component: Component, ctx: CheckContext) -> dict[str, dict[str, Any]]:
    """The experiment config of a denoiser check: the pair, its modality, the tiny budget."""
    b = ctx.budget
    modality = {"name": component.modality, **({"dataset": "gmm8"} if component.modality == "toy" else {})}
    raw = {
        "experiment": {"name": f"kit-{component.name}", "seed": ctx.seed, "device": "cpu"},
        "modality": modality,
        "corruption": {"name": component.partner.name},
        "denoiser": {"name": component.name, **_denoiser_options(component.spec, b)},
        "training": {"steps": b.train_steps, "batch_size": b.train_batch, "lr": b.lr, "warmup_steps": 0,
                     "lr_schedule": "constant", "ema_decay": 0.5, "log_every": b.train_steps,
                     "checkpoint_every": b.train_steps, "eval_every": 0, "progress": False, "cond_dropout": 0.1},
        "sampling": {"sampler": "autoregressive" if component.partner.family == "autoregressive" else "ancestral",
                     "steps": b.sample_steps},
        "evaluation": {"n_samples": b.n_samples},
    }
    return polydiff.config_from_dict(raw, source=f"conformance kit ({component.id})")


def _experiment(component: Component, ctx: CheckContext) -> polydiff.Experiment:
    return polydiff.build_experiment(kit_config(component, ctx), ctx.manager)


def check_forward_per_field(component: Component, ctx: CheckContext) -> None:
    """The raw output has one entry per diffused field with the shape its process expects:
    ``process.predict`` accepts it, ``predict(...).x0`` has the field's shape (plus a vocab
    axis for discrete fields) and ``process.loss`` gives finite per-sample values ``(B,)``."""
    exp = _experiment(component, ctx)
    batch = data_batch(exp.modality, ctx.budget.batch)
    x0, cond = exp.split_batch(batch)
    g = ctx.generator(7)
    t = exp.composite.sample_t(ctx.budget.batch, generator=g)
    corrupted = exp.composite.corrupt(x0, t, generator=g, sources=exp.sources(cond))
    raw = exp.denoiser({f: c.x_t for f, c in corrupted.items()}, t, cond)
    assert set(raw) == set(exp.spaces), f"{component.id}: output fields {sorted(raw)} != diffused fields {sorted(exp.spaces)}"
    for name, process in exp.processes.items():
        pred = process.predict(raw[name], corrupted[name].x_t, t)
        lead = (ctx.budget.batch, *exp.spaces[name].shape)
        assert tuple(pred.x0.shape[:len(lead)]) == lead, f"{component.id}: field {name!r} x0 shape {tuple(pred.x0.shape)}"
        loss = process.loss(raw[name], x0[name], corrupted[name])
        assert tuple(loss.shape) == (ctx.budget.batch,), f"{component.id}: loss of {name!r} has shape {tuple(loss.shape)}"
        assert torch.isfinite(loss).all(), f"{component.id}: loss of field {name!r} is not finite"


def check_cond_dropout_supported(component: Component, ctx: CheckContext) -> None:
    """A conditional denoiser accepts ``cond=None`` and fully dropped conditioning (the null
    values of classifier-free guidance) and returns the same shapes as with conditioning."""
    exp = _experiment(component, ctx)
    x0, cond = exp.split_batch(data_batch(exp.modality, ctx.budget.batch))
    t = torch.full((ctx.budget.batch,), 0.5)
    with_cond = exp.denoiser(x0, t, cond)
    for variant in (None, exp.drop_cond(cond, 1.0, ctx.generator(8))):
        out = exp.denoiser(x0, t, variant)
        for name, value in with_cond.items():
            assert out[name].shape == value.shape, f"{component.id}: field {name!r} changes shape without conditioning"
            assert torch.isfinite(out[name]).all(), f"{component.id}: field {name!r} not finite without conditioning"


def _tiny_run(component: Component, ctx: CheckContext) -> Any:
    """Train the pair once per kit run (shared by the training and checkpoint checks)."""
    from polydiff.training.trainer import train

    key = ("tiny_run", component.id)
    if key not in ctx.cache:
        run_dir = ctx.folder(f"run-{component.name}-{component.partner.name}")
        ctx.cache[key] = train(kit_config(component, ctx), run_dir=run_dir, manager=ctx.manager)
    return ctx.cache[key]


def held_out_loss(exp: polydiff.Experiment, model: torch.nn.Module, ctx: CheckContext) -> float:
    """Mean training loss of ``model`` on fixed validation batches, times and noise."""
    g = ctx.generator(9)
    total = 0.0
    with torch.no_grad():
        for i in range(ctx.budget.eval_batches):
            batch = data_batch(exp.modality, ctx.budget.train_batch, "validation", start=i * ctx.budget.train_batch)
            total += float(exp.loss(model, batch, generator=g)[0])
    return total / ctx.budget.eval_batches


def check_tiny_training_lowers_loss(component: Component, ctx: CheckContext) -> None:
    """The core trainer, run for the tiny budget, lowers the held-out loss by at least 10%
    against the freshly initialised network: gradients reach the parameters and the
    output parametrisation matches what the process trains."""
    from polydiff.training.checkpoint import load_run

    result = _tiny_run(component, ctx)
    assert result.steps == ctx.budget.train_steps, f"{component.id}: trained {result.steps} steps, status {result.status}"
    fresh = _experiment(component, ctx)
    before = held_out_loss(fresh, fresh.denoiser, ctx)
    loaded = load_run(result.run_dir, manager=ctx.manager, use_ema=False)
    after = held_out_loss(fresh, loaded.model, ctx)
    assert math.isfinite(after) and after < 0.9 * before, (
        f"{component.id}: held-out loss went from {before:.4g} to {after:.4g} in {result.steps} steps")


def check_checkpoint_roundtrip(component: Component, ctx: CheckContext) -> None:
    """A finished run reloads with the step it reached and the same weights each time, and
    the reloaded network gives identical outputs (safetensors weights, JSON metadata)."""
    from polydiff.training.checkpoint import load_run

    result = _tiny_run(component, ctx)
    first = load_run(result.run_dir, manager=ctx.manager)
    second = load_run(result.run_dir, manager=ctx.manager)
    assert first.step == result.steps, f"{component.id}: checkpoint holds step {first.step}, run reached {result.steps}"
    exp = first.experiment
    x0, cond = exp.split_batch(data_batch(exp.modality, ctx.budget.batch))
    t = torch.full((ctx.budget.batch,), 0.3)
    with torch.no_grad():
        a, b = first.model(x0, t, cond), second.model(x0, t, cond)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{component.id}: reloaded weights differ for field {name!r}"
    fresh = _experiment(component, ctx).denoiser
    with torch.no_grad():
        c = fresh(x0, t, cond)
    assert any(not torch.equal(a[n], c[n]) for n in a), f"{component.id}: the checkpoint holds untrained weights"


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def _metric_data(component: Component, ctx: CheckContext) -> tuple[dict, dict, dict, dict]:
    """``(samples, reference, spaces, extra keywords)`` for a metric check."""
    modalities = sorted(component.spec.modalities & set(ctx.manager.registry.names("modality")))
    if modalities:
        modality = build_modality(modalities[0], ctx, **dict(getattr(component.spec, "kit_options", {}) or {}))
        n = ctx.budget.n_samples
        samples = data_batch(modality, n, "train")
        reference = data_batch(modality, n, "validation")
        keep = modality.spaces
        params = inspect.signature(component.spec.function).parameters
        extra = {"modality": modality} if "modality" in params else {}
        return {f: samples[f] for f in keep}, {f: reference[f] for f in keep}, dict(keep), extra
    spaces = {"x": polydiff.Continuous((2,)), "tokens": polydiff.Discrete((3,), vocab_size=4)}
    g = ctx.generator(10)
    n = ctx.budget.n_samples
    samples = {"x": torch.randn(n, 2, generator=g), "tokens": torch.randint(4, (n, 3), generator=g)}
    reference = {"x": 1.5 + torch.randn(n, 2, generator=g), "tokens": torch.randint(2, (n, 3), generator=g)}
    return samples, reference, spaces, {}


def check_finite_rows(component: Component, ctx: CheckContext) -> None:
    """The metric returns a non-empty list of tidy rows, each a dict with a string
    ``metric`` and a finite float ``value``, on data of its modality (built with the spec's
    ``kit_options``, passed as ``modality=`` when the function takes it), or, for metrics of any modality, on a State with a 2-D
    Gaussian field and a discrete field of 3 tokens."""
    samples, reference, spaces, extra = _metric_data(component, ctx)
    rows = component.spec.function(samples, reference, spaces=spaces, generator=ctx.generator(11), **extra)
    assert isinstance(rows, list) and rows, f"metric {component.name!r} returned {type(rows).__name__}, expected a non-empty list"
    for row in rows:
        assert isinstance(row, dict), f"metric {component.name!r}: row {row!r} is not a dict"
        assert isinstance(row.get("metric"), str), f"metric {component.name!r}: row {row!r} lacks a 'metric' name"
        value = row.get("value")
        assert isinstance(value, (int, float)) and math.isfinite(value), f"metric {component.name!r}: value {value!r} is not a finite number"
