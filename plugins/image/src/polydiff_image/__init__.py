"""polydiff-image: pixel-space image diffusion for polydiff (see README.md)."""

__version__ = "0.1.0"
