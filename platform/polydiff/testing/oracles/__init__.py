"""Closed-form denoisers for toy data, one module per corruption family.

With an exact denoiser, any gap between samples and the data distribution is the
sampler's own error: the oracle tests (DESIGN.md section 11), the conformance kit's
sampler checks and authors of new samplers all use these.

- ``gaussian``: Gaussian mixtures and point clouds under a Gaussian process.
- ``discrete``: any distribution over short token sequences, by enumeration (masked, uniform).
- ``reflected``: weighted point masses in a box under reflected Brownian motion.
- ``bridge``: paired Gaussians x1 = A x0 + noise under every bridge.
- ``composite``: a labelled Gaussian mixture, point and label diffused together.
"""
from polydiff.testing.oracles.bridge import PairedGaussianOracle
from polydiff.testing.oracles.composite import LabelledMixtureOracle
from polydiff.testing.oracles.discrete import EnumeratedSequenceOracle
from polydiff.testing.oracles.gaussian import GaussianMixtureOracle, PointCloudOracle
from polydiff.testing.oracles.reflected import ReflectedPointOracle

__all__ = ["EnumeratedSequenceOracle", "GaussianMixtureOracle", "LabelledMixtureOracle", "PairedGaussianOracle",
           "PointCloudOracle", "ReflectedPointOracle"]
