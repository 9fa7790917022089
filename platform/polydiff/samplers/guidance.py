"""Conditioning at sampling time: wrappers that turn one ``PredictFn`` into another.

Every wrapper returns a ``PredictFn`` (``predict(x, t) -> {field: Prediction}``), so any
sampler works with it unchanged. NFE counting: samplers count calls of the function they
are given, so one guided evaluation counts as one NFE even when it calls the network
twice (classifier-free guidance) or back-propagates through it (gradient guidance).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.corruptions.base import Prediction, append_dims
from polydiff.spaces import State

PredictFn = Callable[[State, torch.Tensor], Mapping[str, Prediction]]


def _is_probabilities(pred: Prediction, x: torch.Tensor) -> bool:
    """Discrete fields carry p(x0 | x_t) with a trailing vocabulary axis and no eps."""
    return pred.eps is None and pred.x0.ndim == x.ndim + 1


def _mix(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


def _mix_prediction(cond: Prediction, uncond: Prediction, x: torch.Tensor, scale: float) -> Prediction:
    if _is_probabilities(cond, x):
        log_p = _mix(cond.x0.clamp_min(1e-30).log(), uncond.x0.clamp_min(1e-30).log(), scale)
        return Prediction(raw=_mix(cond.raw, uncond.raw, scale), x0=torch.softmax(log_p, dim=-1))
    eps = None if cond.eps is None or uncond.eps is None else _mix(cond.eps, uncond.eps, scale)
    score = None if cond.score is None or uncond.score is None else _mix(cond.score, uncond.score, scale)
    return Prediction(raw=_mix(cond.raw, uncond.raw, scale), x0=_mix(cond.x0, uncond.x0, scale), eps=eps,
                      score=score)


def classifier_free_guidance(predict_cond: PredictFn, predict_uncond: PredictFn, scale: float) -> PredictFn:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): ``uncond + scale (cond - uncond)``.

    Gaussian fields mix x0_hat and eps_hat linearly (the same mix, since both are affine in
    the prediction at fixed x_t), and scores (reflected fields) the same way; discrete fields
    mix log-probabilities and renormalise.
    ``scale = 1`` returns the conditional prediction; ``scale = 0`` the unconditional one.
    Each guided call evaluates both functions (2 network calls) and counts as 1 NFE.

    Args:
        predict_cond: ``PredictFn`` with the conditioning.
        predict_uncond: ``PredictFn`` with the null conditioning.
        scale: guidance weight w (1 + w in the paper's notation).
    """
    def predict(x: State, t: torch.Tensor) -> dict[str, Prediction]:
        cond, uncond = predict_cond(x, t), predict_uncond(x, t)
        return {f: _mix_prediction(cond[f], uncond[f], x[f], scale) for f in cond}

    return predict


def _with_x0(pred: Prediction, x0: torch.Tensor, x: torch.Tensor, process: Any, t: torch.Tensor) -> Prediction:
    """A Prediction carrying ``x0`` and, for Gaussian fields, the eps implied at (x_t, t)."""
    if process.family != "gaussian" or pred.eps is None:
        return Prediction(raw=pred.raw, x0=x0, eps=None)
    v = process.values(t.to(x.dtype), x.ndim)
    safe_sigma = torch.where(v.sigma > 0, v.sigma, torch.ones_like(v.sigma))
    return Prediction(raw=pred.raw, x0=x0, eps=(x - v.alpha * x0) / safe_sigma)


def _with_known_score(pred: Prediction, x0: torch.Tensor, m: torch.Tensor, x: torch.Tensor, process: Any,
                      t: torch.Tensor) -> Prediction:
    """For score-based fields (reflected): the known part's score is the transition kernel's
    score towards the known value, ``m score(x_t | known) + (1 - m) score_hat``."""
    known_score = process.unit_score(Prediction(raw=pred.raw, x0=x0), x, t) / process.width
    score = m.to(known_score.dtype) * known_score + (1 - m.to(known_score.dtype)) * pred.score.double()
    return Prediction(raw=pred.raw, x0=x0, score=score.to(x.dtype))


def _known_x0(known: torch.Tensor, pred: Prediction, x: torch.Tensor) -> torch.Tensor:
    """The known values in the prediction's representation (one-hot for discrete fields)."""
    if _is_probabilities(pred, x):
        return torch.nn.functional.one_hot(known.long(), pred.x0.shape[-1]).to(pred.x0.dtype)
    return known.to(pred.x0.dtype)


def inpaint(predict: PredictFn, known: State, mask: State, processes: Mapping[str, Any]) -> PredictFn:
    """Inpainting by replacement in x0: ``x0_hat = mask known + (1 - mask) x0_hat``.

    Each sampler step then moves the known part towards its true value, and the final step
    to t = 0 (which returns x0_hat) reproduces it exactly. eps_hat is recomputed from the
    replaced x0_hat so the pair stays consistent. Score-based fields (reflected) take the
    transition kernel's score towards the known values on the known part. Fields absent
    from ``known`` pass through.

    Args:
        predict: the unguided ``PredictFn``.
        known: field -> known values, shape ``(B, *field_shape)`` (ids for discrete fields).
        mask: field -> 1 where known, 0 where to generate; broadcastable to ``known``.
        processes: field -> Corruption (to recompute eps_hat).
    """
    def predict_inpainted(x: State, t: torch.Tensor) -> dict[str, Prediction]:
        preds = dict(predict(x, t))
        for f in known:
            pred = preds[f]
            m = mask[f].to(pred.x0.dtype)
            target = _known_x0(known[f], pred, x[f])
            if m.ndim < target.ndim:
                m = append_dims(m, target.ndim)
            x0 = m * target + (1 - m) * pred.x0
            if pred.score is not None and hasattr(processes[f], "unit_score"):
                preds[f] = _with_known_score(pred, x0, m, x[f], processes[f], t)
            else:
                preds[f] = _with_x0(pred, x0, x[f], processes[f], t)
        return preds

    return predict_inpainted


def gradient_guidance(predict: PredictFn, log_reward: Callable[[State], torch.Tensor],
                      processes: Mapping[str, Any], scale: float) -> PredictFn:
    """Reward guidance through the denoiser (DPS, Chung et al. 2023, Algorithm 1, in Tweedie form).

    ``log_reward(x0_hat) -> (B,)`` is evaluated at the denoised estimate and differentiated
    with respect to x_t *through the denoiser*; the guided score is
    ``score + scale grad_x log r(x0_hat(x_t))``, which by Tweedie's formula
    x0_hat = (x_t + sigma^2 score) / alpha shifts each Gaussian field's x0_hat by
    ``scale sigma^2 / alpha grad``. eps_hat is recomputed to match. Every call back-propagates
    through the network once (it counts as 1 NFE). Non-Gaussian fields pass through.

    Args:
        predict: the unguided ``PredictFn`` (must be differentiable in x).
        log_reward: State of x0_hat -> log reward per sample, shape ``(B,)``.
        processes: field -> Corruption.
        scale: guidance strength (0 = no guidance).
    """
    gaussian = [f for f, p in processes.items() if p.family == "gaussian"]

    def predict_guided(x: State, t: torch.Tensor) -> dict[str, Prediction]:
        with torch.enable_grad():
            xg = {f: (v.detach().requires_grad_(True) if f in gaussian else v) for f, v in x.items()}
            preds = dict(predict(xg, t))
            reward = log_reward({f: p.x0 for f, p in preds.items()}).sum()
            grads = torch.autograd.grad(reward, [xg[f] for f in gaussian], allow_unused=True)
        for f, grad in zip(gaussian, grads):
            grad = torch.zeros_like(x[f]) if grad is None else grad
            v = processes[f].values(t.to(x[f].dtype), x[f].ndim)
            x0 = preds[f].x0.detach() + scale * v.sigma**2 / v.alpha * grad
            preds[f] = _with_x0(Prediction(raw=preds[f].raw.detach(), x0=x0, eps=preds[f].eps), x0, x[f],
                                processes[f], t)
        return preds

    return predict_guided
