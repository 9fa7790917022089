"""Corruption (forward) processes, one module per family (see docs/corruptions.md)."""
from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.corruptions.bridge import BridgeCorruption, BrownianBridge, OUBridge, VEBridge, VPBridge, make_bridge
from polydiff.corruptions.composite import CompositeCorruption
from polydiff.corruptions.gaussian import (
    GaussianCorruption,
    eps_to_x0,
    flow_velocity_to_x0,
    v_to_x0,
    x0_to_eps,
    x0_to_flow_velocity,
    x0_to_v,
)
from polydiff.corruptions.masked import MaskedCorruption, sample_categorical
from polydiff.corruptions.reflected import ReflectedCorruption, reflect, reflected_kernel_score, reflected_log_kernel
from polydiff.corruptions.uniform import UniformCorruption, ctmc_elbo_integrand

__all__ = [
    "BridgeCorruption", "BrownianBridge", "CompositeCorruption", "Corrupted", "Corruption", "GaussianCorruption",
    "MaskedCorruption", "OUBridge", "Prediction", "ReflectedCorruption", "UniformCorruption", "VEBridge", "VPBridge",
    "append_dims", "ctmc_elbo_integrand", "eps_to_x0", "flow_velocity_to_x0", "make_bridge", "reflect",
    "reflected_kernel_score", "reflected_log_kernel", "sample_categorical", "v_to_x0", "x0_to_eps",
    "x0_to_flow_velocity", "x0_to_v",
]
