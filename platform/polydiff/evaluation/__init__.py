"""Shared evaluation: sample distances, MMD, likelihoods in bits/dim, timing."""
from polydiff.evaluation.distances import cov_error, mean_error, sliced_wasserstein
from polydiff.evaluation.likelihood import elbo_bits_per_dim, pf_ode_bits_per_dim
from polydiff.evaluation.mmd import median_distance, mmd_squared
from polydiff.evaluation.timing import Timing, time_callable

__all__ = ["Timing", "cov_error", "elbo_bits_per_dim", "mean_error", "median_distance", "mmd_squared",
           "pf_ode_bits_per_dim", "sliced_wasserstein", "time_callable"]
