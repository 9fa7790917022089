"""``python -m polydiff``: the same as the ``polydiff`` command."""
from __future__ import annotations

import sys

from polydiff.cli import main

if __name__ == "__main__":
    sys.exit(main())
