"""Atomic file writes: a reader never sees a half-written checkpoint, cache or artefact."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    ``write`` receives the temporary file's path (for ``safetensors.torch.save_file``,
    ``numpy.savez``, ``Path.write_text``, ...). The parent folder is created; on any error
    the temporary file is removed and ``path`` is left as it was. The file gets mode 0644.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


CACHE_ENV = "POLYDIFF_CACHE"


def cache_dir(name: str) -> Path:
    """The cache folder ``$POLYDIFF_CACHE/<name>`` (default ``~/.cache/polydiff/<name>``), not created.

    Plugins keep what they train once per data set here (a feature classifier, a
    tokenizer); the conformance kit's ``private_cache`` fixture points it at a test folder.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "polydiff")
    return Path(root) / name
