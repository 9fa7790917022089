"""Samplers of the masked (absorbing) family: ancestral with ReMDM remasking, cached, confidence, semi-AR.

Every sampler here is a plain function (k-diffusion style) that starts from a State whose
masked fields hold the mask id ``vocab_size`` wherever a token is to be generated. Tokens
that are *unmasked in the initial State* are conditioning: no sampler here ever changes
them (ancestral masked steps never touch unmasked tokens, and ReMDM remasking is restricted
to tokens the sampler itself unmasked). Writing known ids into the prior with
``fix_tokens`` is therefore exact conditioning (infilling, prefixes) whenever the denoiser
is exact, because the SUBS denoiser's p(x0 | x_t) conditions on every unmasked token.

Masked-family processes must provide ``alpha(t)`` (float64, per the masking schedule);
the mask id is ``space.vocab_size``. Each sampler reports the network calls it actually
made as ``nfe``.

Notation (per field, from time t to s < t):
    a_t, a_s   alpha(t), alpha(s): probability that a token is clean
    probs      p_theta(x0 | x_t), shape (B, *field_shape, V) (SUBS: one-hot where unmasked)
    sigma      ReMDM remasking probability of an unmasked token (Wang et al. 2025)
    fixed      tokens unmasked in the initial State (conditioning)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.corruptions.masked import sample_categorical
from polydiff.samplers.common import SampleOutput, call_model, check_grid, require_families
from polydiff.spaces import State

MASKED = frozenset({"masked"})
REMASK_SCHEDULES = ("cap", "rescale")
STRATEGIES = ("confidence", "margin", "random")


def fix_tokens(x: State, known: State, mask: State) -> dict[str, torch.Tensor]:
    """Write known token ids into a (prior) State: exact conditioning for the masked samplers.

    Masked samplers never change tokens that are unmasked in the State they start from,
    and the SUBS denoiser conditions on them, so with an exact denoiser the samples are
    exact draws of p(x0 | known tokens) (prefix prompting, infilling).

    Args:
        x: the prior State, field -> ``(B, *field_shape)`` (all mask for masked fields).
        known: field -> token ids ``(B, *field_shape)`` (or broadcastable), read where ``mask``.
        mask: field -> bool ``(B, *field_shape)`` (or broadcastable), True where the id is known.

    Returns:
        A new State; fields absent from ``known`` are passed through.
    """
    out = dict(x)
    for field, ids in known.items():
        if field not in x or field not in mask:
            raise ValueError(f"fix_tokens: field {field!r} of known needs a mask and a State entry; "
                             f"State fields {sorted(x)}, mask fields {sorted(mask)}")
        target = x[field]
        where = mask[field].to(torch.bool).to(target.device).expand_as(target)
        out[field] = torch.where(where, ids.to(target.device, target.dtype).expand_as(target), target)
    return out


def _alphas(processes: Mapping[str, Any], times: list[float]) -> dict[str, list[float]]:
    """alpha at every grid time per field, computed once in float64."""
    t = torch.tensor(times, dtype=torch.float64)
    return {f: proc.alpha(t).tolist() for f, proc in processes.items()}


def _mask_ids(processes: Mapping[str, Any]) -> dict[str, int]:
    return {f: proc.space.vocab_size for f, proc in processes.items()}


def _remask_sigma(a_t: float, a_s: float, remask: float, schedule: str) -> float:
    """ReMDM's sigma_t (Wang et al. 2025, Sec. 4.1): at most sigma_max = min(1, (1 - a_s) / a_t),
    "cap" min(remask, sigma_max) or "rescale" remask * sigma_max."""
    if remask <= 0:
        return 0.0
    sigma_max = min(1.0, (1.0 - a_s) / a_t) if a_t > 0 else 1.0
    return min(remask, sigma_max) if schedule == "cap" else remask * sigma_max


def _step_field(x: torch.Tensor, probs: torch.Tensor, mask_id: int, a_t: float, a_s: float, sigma: float,
                fixed: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """One ReMDM step (Wang et al. 2025, eq. 5); sigma = 0 is MDLM's ancestral step (eq. 7).

    A masked token unmasks with probability (a_s - (1 - sigma) a_t) / (1 - a_t) to a draw of
    ``probs``; an unmasked token that is not ``fixed`` is remasked with probability sigma.
    Both keep the marginal q(x_s | x0) = a_s x0 + (1 - a_s) mask.
    """
    p_unmask = (a_s - (1.0 - sigma) * a_t) / (1.0 - a_t) if a_t < 1.0 else 1.0
    masked = x == mask_id
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
    out = torch.where(masked & (u < p_unmask), sample_categorical(probs, generator), x)
    if sigma > 0:
        out = torch.where(~masked & ~fixed & (u < sigma), torch.full_like(x, mask_id), out)
    return out


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor) -> tuple[list[float], dict[str, list[float]]]:
    require_families(processes, MASKED, name)
    check_grid(grid, name)
    times = grid.tolist()
    return times, _alphas(processes, times)


def sample_masked(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                  generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                  remask: float = 0.0, remask_schedule: str = "cap") -> SampleOutput:
    """Ancestral masked sampling (MDLM, Sahoo et al. 2024, eq. 7) with optional ReMDM remasking.

    ReMDM (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
    Scaling", eq. 5): an unmasked token is remasked with probability sigma_t and a masked
    one unmasks with probability (a_s - (1 - sigma_t) a_t) / (1 - a_t), which leaves the
    marginals q(x_s | x0) unchanged for any sigma_t <= min(1, (1 - a_s) / a_t). ``remask = 0``
    is plain ancestral sampling (exact in the many-step limit with an exact denoiser).
    Fixed tokens (unmasked at the start) are never remasked. NFE = N.

    Args:
        model: ``PredictFn``; processes: field -> masked-family process.
        x: the prior State at ``grid[0]``; grid: descending times ``(N + 1,)`` ending at 0.
        generator: the only source of randomness; callback: ``callback(i, t, x, predictions)``.
        remask: eta of ReMDM (0 disables remasking).
        remask_schedule: ``"cap"`` (sigma = min(eta, sigma_max), ReMDM "max-capped") or
            ``"rescale"`` (sigma = eta sigma_max, ReMDM "rescaled").

    Notation: see the module docstring.
    """
    times, alphas = _start("masked", processes, grid)
    if remask_schedule not in REMASK_SCHEDULES or not 0.0 <= remask <= 1.0:
        raise ValueError(f"sampler 'masked': remask must be in [0, 1] and remask_schedule one of "
                         f"{list(REMASK_SCHEDULES)}, got remask={remask}, remask_schedule={remask_schedule!r}")
    masks = _mask_ids(processes)
    x = dict(x)
    fixed = {f: x[f] != masks[f] for f in processes}
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        x = {f: _step_field(x[f], pred[f].x0, masks[f], alphas[f][i], alphas[f][i + 1],
                            _remask_sigma(alphas[f][i], alphas[f][i + 1], remask, remask_schedule), fixed[f],
                            generator) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def sample_masked_cached(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                         generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                         ) -> SampleOutput:
    """Ancestral masked sampling with MDLM's cache (Sahoo et al. 2024, Sec. 4.2 "Caching").

    While no token of the batch changed in a step, x_t is the same as at the last call, so
    the last network output is reused instead of calling the model again. This is exact
    for time-agnostic denoisers -- networks without time conditioning, and the exact
    oracle, whose p(x0 | x_t) does not depend on t (MDLM Sec. 3.2.3; Zheng et al. 2024) --
    and an approximation for time-conditioned ones. Savings grow with the number of steps
    per token: with B * D tokens to unmask over N steps, roughly N (1 - exp(-B D / N))
    calls are made. NFE = calls actually made (<= N).

    Args: as ``sample_masked`` (no remasking: remasking changes the State at every step).
    """
    times, alphas = _start("masked_cached", processes, grid)
    masks = _mask_ids(processes)
    x, pred, changed, nfe = dict(x), None, True, 0
    for i in range(len(times) - 1):
        if changed or pred is None:
            pred, nfe = call_model(model, x, times[i]), nfe + 1
        new = {f: _step_field(x[f], pred[f].x0, masks[f], alphas[f][i], alphas[f][i + 1], 0.0, None, generator)
               for f in processes}
        changed = any(not torch.equal(new[f], x[f]) for f in processes)
        x = new
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})


# ---------------------------------------------------------------- confidence (LLaDA / MaskGIT)

def _tempered(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised, float64; T = 0 is the one-hot of the argmax (greedy decoding)."""
    p = probs.double().clamp_min(0)
    if temperature == 0:
        return torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).double()
    if temperature != 1.0:
        p = p ** (1.0 / temperature)
    return p / p.sum(-1, keepdim=True).clamp_min(1e-300)


def _scores(p: torch.Tensor, draw: torch.Tensor, strategy: str, generator: torch.Generator | None) -> torch.Tensor:
    """How sure the model is of each position's draw: its probability, top1 - top2, or random."""
    if strategy == "confidence":
        return p.gather(-1, draw[..., None])[..., 0]
    if strategy == "margin":
        top = p.topk(2, dim=-1).values
        return top[..., 0] - top[..., 1]
    return torch.rand(draw.shape, generator=generator, device=draw.device, dtype=torch.float64)


def _confidence_field(x: torch.Tensor, probs: torch.Tensor, k: torch.Tensor, mask_id: int, strategy: str,
                      temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Unmask the ``k[b]`` best-scored masked positions of each sample to their drawn tokens."""
    flat = x.flatten(1)
    p = _tempered(probs.reshape(*flat.shape, probs.shape[-1]), temperature)
    draw = sample_categorical(p, generator)
    masked = flat == mask_id
    score = torch.where(masked, _scores(p, draw, strategy, generator), torch.full_like(p[..., 0], -math.inf))
    order = score.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1], device=x.device).expand_as(order))
    chosen = masked & (rank < k[:, None])
    return torch.where(chosen, draw, flat).reshape(x.shape)


def _unmask_counts(x: State, start: Mapping[str, torch.Tensor], masks: Mapping[str, int],
                   alphas: Mapping[str, list[float]], i: int) -> dict[str, torch.Tensor]:
    """Tokens to unmask per sample in step i: masked now minus round(M0 (1 - a_s) / (1 - a_0))."""
    out = {}
    for f, m0 in start.items():
        a0, a_s = alphas[f][0], alphas[f][i + 1]
        frac = (1.0 - a_s) / (1.0 - a0) if a0 < 1.0 else 0.0
        target = torch.round(m0.double() * min(frac, 1.0)).long()
        out[f] = ((x[f] == masks[f]).flatten(1).sum(1) - target).clamp(min=0)
    return out


def sample_confidence(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                      generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                      strategy: str = "confidence", temperature: float = 1.0) -> SampleOutput:
    """Confidence-ordered unmasking: MaskGIT (Chang et al. 2022, Sec. 3.2) / LLaDA (Nie et al. 2025,
    "low-confidence remasking", Algorithm 5).

    In step t -> s each sample unmasks a fixed number k of its masked tokens: the expected
    count under the ancestral step, (a_s - a_t) / (1 - a_t) per masked token, rounded
    cumulatively (k = masked now - round(M0 (1 - a_s) / (1 - a_0)), M0 = masked at the
    start) so that all are unmasked at t = 0. A token is drawn for every masked position
    from p_theta^(1/T) (T = 0: the argmax, as LLaDA's default); the k positions with the
    highest score keep theirs:

    - ``"confidence"``: the probability of the drawn token (MaskGIT, LLaDA);
    - ``"margin"``: top-1 minus top-2 probability (Kim et al. 2025, "Train for the worst,
      plan for the best");
    - ``"random"``: uniformly random positions: any-order autoregressive sampling, which
      is distribution-preserving in the many-step limit (one token per step).

    ``"confidence"`` is *not* distribution-preserving: it prefers positions whose draw
    came out likely, so it is mode-seeking (samples stay in the support of an exact
    denoiser but are more concentrated than the data), and so is every strategy at
    T < 1. ``"margin"`` at T = 1 chooses positions from p alone, not from the draws, so
    with one token per step it is an adaptive-order autoregressive sampler and exact
    with an exact denoiser (measured in tests/samplers/test_masked.py); with several
    tokens per step it has the same mean-field error as ancestral sampling. Steps where
    no sample has a token to unmask skip the model (the callback then gets the last
    predictions, ``{}`` before the first call). NFE = calls actually made.

    Args:
        strategy: ``"confidence"``, ``"margin"`` or ``"random"``.
        temperature: T >= 0 of the token draws (1 = the model's distribution, 0 = argmax).
        Others: as ``sample_masked``.
    """
    times, alphas = _start("masked_confidence", processes, grid)
    if strategy not in STRATEGIES or not temperature >= 0:
        raise ValueError(f"sampler 'masked_confidence': strategy must be one of {list(STRATEGIES)} and "
                         f"temperature >= 0, got strategy={strategy!r}, temperature={temperature}")
    masks = _mask_ids(processes)
    x = dict(x)
    start = {f: (x[f] == masks[f]).flatten(1).sum(1) for f in processes}
    pred, nfe = {}, 0
    for i in range(len(times) - 1):
        k = _unmask_counts(x, start, masks, alphas, i)
        if any(bool((v > 0).any()) for v in k.values()):
            pred, nfe = call_model(model, x, times[i]), nfe + 1
            x = {f: _confidence_field(x[f], pred[f].x0, k[f], masks[f], strategy, temperature, generator)
                 for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})


# ---------------------------------------------------------------- semi-autoregressive blocks

def _share(n: int, blocks: int) -> list[int]:
    """Split n grid intervals over the blocks as evenly as possible, at least one each."""
    base, extra = divmod(n, blocks)
    return [max(1, base + (1 if b < extra else 0)) for b in range(blocks)]


def _subgrid(grid: torch.Tensor, n: int) -> list[float]:
    """n intervals of ``grid`` resampled at evenly spaced fractional indices (keeps its shape), ending at 0."""
    pos = torch.linspace(0, len(grid) - 1, n + 1, dtype=torch.float64)
    lo = pos.floor().long().clamp(max=len(grid) - 2)
    frac = pos - lo
    g = grid.double().cpu()
    times = (g[lo] * (1 - frac) + g[lo + 1] * frac).tolist()
    times[0], times[-1] = float(g[0]), 0.0
    return times


def _block_masks(processes: Mapping[str, Any], b: int, block_size: int, device: torch.device
                 ) -> dict[str, torch.Tensor]:
    """Per field, a bool of shape ``field_shape``: True on flattened positions [b bs, (b + 1) bs)."""
    out = {}
    for f, proc in processes.items():
        index = torch.arange(proc.space.dim, device=device)
        out[f] = ((index >= b * block_size) & (index < (b + 1) * block_size)).reshape(proc.space.shape)
    return out


def sample_semi_ar(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                   generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                   block_size: int = 32, inner: int | None = None) -> SampleOutput:
    """Semi-autoregressive block sampling (LLaDA, Nie et al. 2025, Sec. 2.4; SSD-LM, Han et al.
    2023; BD3-LM, Arriola et al. 2025).

    The flattened positions of each field are cut into blocks of ``block_size``; blocks are
    generated left to right, each by ancestral masked sampling over its own sub-grid from
    ``grid[0]`` to 0 while earlier blocks are fixed and later ones stay masked. Sub-grids
    are ``grid`` resampled at evenly spaced fractional indices with ``inner`` intervals
    each, or, when ``inner`` is None, the N intervals of ``grid`` shared out among the
    blocks (at least one each). With an exact (time-agnostic) denoiser each block is an
    exact draw given the earlier ones in the many-step limit; a time-conditioned network
    sees states (suffix all masked) off its training distribution. Steps whose block has no
    masked token skip the model. NFE = calls actually made.

    Args:
        block_size: tokens per block (LLaDA: 32).
        inner: intervals per block (None: share the grid's intervals).
        Others: as ``sample_masked``.
    """
    times, _ = _start("masked_semi_ar", processes, grid)
    if block_size < 1 or (inner is not None and inner < 1):
        raise ValueError(f"sampler 'masked_semi_ar': block_size and inner must be >= 1, got {block_size}, {inner}")
    masks = _mask_ids(processes)
    device = next(iter(x.values())).device
    n_blocks = math.ceil(max(proc.space.dim for proc in processes.values()) / block_size)
    counts = [inner] * n_blocks if inner is not None else _share(len(times) - 1, n_blocks)
    x, nfe, step = dict(x), 0, 0
    for b, count in enumerate(counts):
        sub = _subgrid(grid, count)
        alphas, block = _alphas(processes, sub), _block_masks(processes, b, block_size, device)
        for j in range(count):
            if not any(bool(((x[f] == masks[f]) & block[f]).any()) for f in processes):
                break
            pred, nfe = call_model(model, x, sub[j]), nfe + 1
            x = {f: torch.where(block[f], _step_field(x[f], pred[f].x0, masks[f], alphas[f][j], alphas[f][j + 1],
                                                      0.0, None, generator), x[f]) for f in processes}
            if callback is not None:
                callback(step, sub[j], x, pred)
            step += 1
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid, "blocks": n_blocks, "steps_per_block": counts})
