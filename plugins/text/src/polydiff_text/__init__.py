"""polydiff-text: diffusion language models on real text for polydiff (see README.md)."""

__version__ = "0.1.0"
