"""Corruption (forward) processes, one module per family."""
from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.corruptions.gaussian import (
    GaussianCorruption,
    eps_to_x0,
    flow_velocity_to_x0,
    v_to_x0,
    x0_to_eps,
    x0_to_flow_velocity,
    x0_to_v,
)

__all__ = [
    "Corrupted", "Corruption", "GaussianCorruption", "Prediction", "append_dims",
    "eps_to_x0", "flow_velocity_to_x0", "v_to_x0", "x0_to_eps", "x0_to_flow_velocity", "x0_to_v",
]
