"""Shared test setup: the kit's opt-in fixtures (fresh plugin manager, generator, run dir, network
guard), and a private cache folder so that plugins' caches (e.g. the image plugin's feature
classifiers, under POLYDIFF_CACHE) never land in the user's ~/.cache during tests."""
from __future__ import annotations

import os

import pytest

pytest_plugins = ["polydiff.testing.fixtures"]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    previous = os.environ.get("POLYDIFF_CACHE")
    os.environ["POLYDIFF_CACHE"] = str(tmp_path_factory.mktemp("polydiff-cache"))
    yield
    if previous is None:
        os.environ.pop("POLYDIFF_CACHE", None)
    else:
        os.environ["POLYDIFF_CACHE"] = previous
