"""Hook specifications for polydiff plugins.

Every hook is named ``polydiff_<what>``; implement any subset with ``@polydiff.hookimpl``.
An implementation may accept fewer arguments than the spec lists (pluggy "opt-in
arguments"), so hooks gain arguments over time without breaking plugins; arguments are
never renamed or removed.

Conventions that hold for every hook:
    time    t in [0, 1]; t = 0 is data, t = 1 is the prior.
    state   a State is a mapping field name -> tensor, batch first: (B, *field_shape).
    names   spec names are lowercase, unique across all installed plugins.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # runtime imports stay at `pluggy` only: no cycles
    from collections.abc import Iterable, Mapping

    from polydiff.specs import (CorruptionSpec, DenoiserSpec, MetricSpec, ModalitySpec,
                                SamplerSpec, ScheduleSpec)
    from polydiff.training.trainer import Trainer

PROJECT_NAME = "polydiff"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Mark a plugin function as an implementation of a polydiff hook."""


# ---------------------------------------------------------------------------
# Registration hooks: called once per plugin manager, after all plugins are loaded;
# each plugin's results are collected, validated and indexed by name.
# ---------------------------------------------------------------------------

@hookspec
def polydiff_modalities() -> Iterable[ModalitySpec]:
    """Register data modalities: what one sample is and how it is read and written.

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.ModalitySpec``. ``name`` must be unique across installed
        plugins; ``factory(**options) -> Modality`` builds the object (see
        ``polydiff.protocols.Modality``) from the ``[modality]`` table of a config.

    Call semantics:
        Called once per plugin manager; every implementation is called on its own and the
        results collected (not first-result). A duplicate name is an error naming both
        distributions; an exception marks only this plugin as broken.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_modalities():
                yield polydiff.ModalitySpec(
                    name="toy2d", summary="2-D Gaussian mixture", factory=Toy2D)

    Since: 0.1
    """
    return ()


@hookspec
def polydiff_schedules() -> Iterable[ScheduleSpec]:
    """Register Gaussian noise schedules ``t -> (alpha, sigma)``.

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.ScheduleSpec`` whose ``factory(**options)`` returns a
        ``polydiff.Schedule`` subclass instance (implement ``values`` and
        ``t_from_log_snr``). Configs select it with ``[corruption] schedule = "<name>"``.

    Call semantics:
        Collected from every plugin, as ``polydiff_modalities``.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_schedules():
                yield polydiff.ScheduleSpec(
                    name="vp-steep", summary="VP linear with beta_max 30",
                    factory=lambda **o: polydiff.VPLinear(beta_max=30.0, **o))

    Since: 0.1
    """
    return ()


@hookspec
def polydiff_corruptions() -> Iterable[CorruptionSpec]:
    """Register corruption (forward) processes.

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.CorruptionSpec``. ``family`` places the process among the
        families samplers know; ``spaces`` lists the space kinds it accepts;
        ``factory(space, **options) -> polydiff.Corruption`` binds it to one field
        (``options`` come from the ``[corruption]`` table, with ``field`` and ``registry``
        passed as keywords when the factory accepts them).

    Call semantics:
        Collected from every plugin, as ``polydiff_modalities``.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_corruptions():
                yield polydiff.CorruptionSpec(
                    name="gaussian-vp", summary="Gaussian with the VP-linear schedule",
                    family="gaussian", spaces=frozenset({"continuous"}),
                    factory=lambda space, **o: polydiff.GaussianCorruption(
                        space, polydiff.VPLinear(), name="gaussian-vp"))

    Since: 0.1
    """
    return ()


@hookspec
def polydiff_denoisers() -> Iterable[DenoiserSpec]:
    """Register denoiser networks.

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.DenoiserSpec``. ``factory(spaces, cond_spaces, **options)``
        returns a ``torch.nn.Module`` whose ``forward(x_t, t, cond)`` takes a State, times
        of shape ``(B,)`` and an optional conditioning State, and returns one raw output per
        diffused field (shape ``(B, *field_shape)``).

    Call semantics:
        Collected from every plugin, as ``polydiff_modalities``.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_denoisers():
                yield polydiff.DenoiserSpec(
                    name="tiny-mlp", summary="two-layer MLP on flat fields",
                    factory=lambda spaces, cond_spaces, **o: polydiff.MLPDenoiser(
                        spaces, cond_spaces, hidden=64, depth=2))

    Since: 0.1
    """
    return ()


@hookspec
def polydiff_samplers() -> Iterable[SamplerSpec]:
    """Register samplers: plain functions, stateless between calls (k-diffusion style).

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.SamplerSpec``. ``function(model, processes, x, grid, *,
        generator=None, callback=None, **options) -> polydiff.SampleOutput`` where
        ``model(x, t) -> {field: Prediction}``, ``processes`` maps field -> Corruption,
        ``x`` is the prior State and ``grid`` a descending 1-D tensor of times ending at 0.
        ``families`` lists the corruption families it supports.

    Call semantics:
        Collected from every plugin, as ``polydiff_modalities``.

    Example:
        .. code-block:: python

            import polydiff

            def x0_jump(model, processes, x, grid, *, generator=None, callback=None):
                t = grid[0].expand(polydiff.batch_size(x))
                pred = model(x, t)
                return polydiff.SampleOutput({f: p.x0 for f, p in pred.items()}, nfe=1)

            @polydiff.hookimpl
            def polydiff_samplers():
                yield polydiff.SamplerSpec(name="x0-jump", summary="one-step denoise",
                                           function=x0_jump, families=frozenset({"gaussian"}))

    Since: 0.1
    """
    return ()


@hookspec
def polydiff_metrics() -> Iterable[MetricSpec]:
    """Register sample-quality metrics.

    Args:
        (none)

    Returns:
        An iterable of ``polydiff.MetricSpec``. ``function(samples, reference, *, spaces,
        generator) -> list[dict]`` returns tidy rows with at least ``metric`` and ``value``;
        ``samples`` and ``reference`` are States of shape ``(N, *field_shape)``.

    Call semantics:
        Collected from every plugin, as ``polydiff_modalities``.

    Example:
        .. code-block:: python

            import polydiff

            def mean_gap(samples, reference, *, spaces, generator=None):
                return [{"metric": "mean_gap", "field": f,
                         "value": float((samples[f].mean(0) - reference[f].mean(0)).norm())}
                        for f in spaces]

            @polydiff.hookimpl
            def polydiff_metrics():
                yield polydiff.MetricSpec(name="mean_gap", summary="distance of the means",
                                          function=mean_gap)

    Since: 0.1
    """
    return ()


# ---------------------------------------------------------------------------
# Training-loop events: called by the trainer on every rank; return values are ignored.
# Use trylast/tryfirst for ordering. Stop early with ``trainer.request_stop(reason)``.
# ---------------------------------------------------------------------------

@hookspec
def polydiff_train_start(trainer: Trainer) -> None:
    """Called once before the first step, after the model, optimizer and run folder exist.

    Args:
        trainer: the running ``Trainer`` (``trainer.run_dir``, ``trainer.experiment``,
            ``trainer.step``: the step resumed from, 0 for a new run).

    Returns:
        None (ignored).

    Call semantics:
        Every implementation is called, on every rank. An exception aborts training.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_train_start(trainer):
                print("training in", trainer.run_dir)

    Since: 0.1
    """


@hookspec
def polydiff_train_step_end(trainer: Trainer, step: int, metrics: Mapping[str, float]) -> None:
    """Called after every optimizer step on every rank, after the EMA update and logging.

    Args:
        trainer: the running ``Trainer``; call ``trainer.request_stop(reason)`` to stop early.
        step: the global step just completed (1-based).
        metrics: scalar metrics of this step (``loss``, ``grad_norm``, ``lr``), already
            averaged over ranks.

    Returns:
        None (ignored).

    Call semantics:
        Every implementation is called. Must not modify the model.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_train_step_end(trainer, step, metrics):
                if metrics["loss"] < 0.01:
                    trainer.request_stop(f"loss below 0.01 at step {step}")

    Since: 0.1
    """


@hookspec
def polydiff_evaluate(trainer: Trainer, step: int, rows: list[dict]) -> None:
    """Called after each periodic evaluation, with the metric rows it produced.

    Args:
        trainer: the running ``Trainer``.
        step: the global step evaluated.
        rows: tidy metric rows (``metric``, ``value``, and keys such as ``field``); a
            plugin may append rows of its own.

    Returns:
        None (ignored).

    Call semantics:
        Every implementation is called, on rank 0 only, after samples were written to
        ``trainer.run_dir / "samples" / f"step_{step:07d}"``.

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_evaluate(trainer, step, rows):
                best = min(r["value"] for r in rows if r["metric"] == "sliced_wasserstein")
                print(step, best)

    Since: 0.1
    """


@hookspec
def polydiff_train_end(trainer: Trainer, status: str) -> None:
    """Called once when training stops, on every rank.

    Args:
        trainer: the ``Trainer``.
        status: ``"completed"``, ``"stopped: <reason>"`` or ``"failed: <error>"``.

    Returns:
        None (ignored).

    Call semantics:
        Every implementation is called, also after a failure (the error is re-raised after).

    Example:
        .. code-block:: python

            import polydiff

            @polydiff.hookimpl
            def polydiff_train_end(trainer, status):
                (trainer.run_dir / "STATUS").write_text(status)

    Since: 0.1
    """
