"""The image plugin's tests: feature classifiers are cached in a folder of this test session,
never in the user's ~/.cache/polydiff."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_classifier_cache(tmp_path_factory):
    previous = os.environ.get("POLYDIFF_CACHE")
    os.environ["POLYDIFF_CACHE"] = str(tmp_path_factory.mktemp("polydiff-cache"))
    yield
    if previous is None:
        os.environ.pop("POLYDIFF_CACHE", None)
    else:
        os.environ["POLYDIFF_CACHE"] = previous
