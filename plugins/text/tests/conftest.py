"""The text plugin's tests keep trained BPE tokenizers in a folder of the test session, never in
~/.cache/polydiff (the kit's ``private_cache`` fixture; ``pytest_plugins`` may only be set in
the root conftest, so the fixture is imported here)."""
from polydiff.testing.fixtures import private_cache  # noqa: F401  (an autouse fixture)
