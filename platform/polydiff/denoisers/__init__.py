"""Generic denoiser building blocks: embeddings, networks, preconditioning."""
from polydiff.denoisers.embeddings import AdaLayerNorm, FourierEmbedding, SinusoidalEmbedding
from polydiff.denoisers.mlp import MLPDenoiser
from polydiff.denoisers.preconditioning import EDMPreconditioning
from polydiff.denoisers.transformer import DiTBlock, TransformerDenoiser

__all__ = ["AdaLayerNorm", "DiTBlock", "EDMPreconditioning", "FourierEmbedding", "MLPDenoiser", "SinusoidalEmbedding",
           "TransformerDenoiser"]
