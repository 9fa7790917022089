"""The core's own plugins, registered through the same hooks as third-party ones.

Nothing imports these modules directly except ``polydiff.plugins`` (by module name).
``discrete``, ``reflected``, ``bridge`` and ``autoregressive`` register one corruption family each together
with the samplers of that family.
"""

BUILTIN_PLUGINS = (
    "polydiff.builtin.schedules",
    "polydiff.builtin.corruptions",
    "polydiff.builtin.denoisers",
    "polydiff.builtin.samplers",
    "polydiff.builtin.metrics",
    "polydiff.builtin.discrete",
    "polydiff.builtin.reflected",
    "polydiff.builtin.bridge",
    "polydiff.builtin.autoregressive",
    "polydiff.builtin.toy",
    "polydiff.builtin.toy_tokens",
    "polydiff.builtin.toy_mixed",
    "polydiff.builtin.toy_box",
    "polydiff.builtin.toy_paired",
)
