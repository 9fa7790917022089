"""Closed-form denoisers for toy data, one module per corruption family.

With an exact denoiser, any gap between samples and the data distribution is the
sampler's own error: the oracle tests (DESIGN.md section 11), the conformance kit's
sampler checks and authors of new samplers all use these.

- ``gaussian``: Gaussian mixtures and point clouds under a Gaussian process.
"""
from polydiff.testing.oracles.gaussian import GaussianMixtureOracle, PointCloudOracle

__all__ = ["GaussianMixtureOracle", "PointCloudOracle"]
