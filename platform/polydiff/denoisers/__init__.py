"""Generic denoiser building blocks: embeddings, networks, preconditioning."""
from polydiff.denoisers.embeddings import AdaLayerNorm, FourierEmbedding, SinusoidalEmbedding
from polydiff.denoisers.mlp import MLPDenoiser
from polydiff.denoisers.preconditioning import EDMPreconditioning

__all__ = ["AdaLayerNorm", "EDMPreconditioning", "FourierEmbedding", "MLPDenoiser", "SinusoidalEmbedding"]
