"""The core's own plugins run through the conformance kit, exactly like third-party ones."""
from __future__ import annotations

from polydiff.testing import PluginConformance


class TestBuiltinSchedules(PluginConformance):
    plugin = "builtin.schedules"


class TestBuiltinCorruptions(PluginConformance):
    plugin = "builtin.corruptions"


class TestBuiltinDenoisers(PluginConformance):
    plugin = "builtin.denoisers"


class TestBuiltinSamplers(PluginConformance):
    plugin = "builtin.samplers"


class TestBuiltinMetrics(PluginConformance):
    plugin = "builtin.metrics"


class TestBuiltinDiscrete(PluginConformance):
    plugin = "builtin.discrete"


class TestBuiltinReflected(PluginConformance):
    plugin = "builtin.reflected"


class TestBuiltinBridge(PluginConformance):
    plugin = "builtin.bridge"


class TestBuiltinAutoregressive(PluginConformance):
    plugin = "builtin.autoregressive"


class TestBuiltinToy(PluginConformance):
    plugin = "builtin.toy"


class TestBuiltinToyTokens(PluginConformance):
    plugin = "builtin.toy_tokens"


class TestBuiltinToyMixed(PluginConformance):
    plugin = "builtin.toy_mixed"


class TestBuiltinToyBox(PluginConformance):
    plugin = "builtin.toy_box"


class TestBuiltinToyPaired(PluginConformance):
    plugin = "builtin.toy_paired"


def test_every_builtin_plugin_has_a_conformance_class():
    import polydiff

    builtins = {name for name, info in polydiff.make_plugin_manager(autoload=False).plugins.items() if info.builtin}
    covered = {cls.plugin for cls in PluginConformance.__subclasses__() if cls.__module__ == __name__}
    assert builtins == covered, f"add a PluginConformance class for {sorted(builtins - covered)}"


def _sloppy_sampler(model, processes, x, grid, *, generator=None, callback=None):
    """Ignores the generator and reports no evaluations: the kit must catch both."""
    import polydiff

    out = {f: v + 0.01 * __import__("torch").randn_like(v) for f, v in x.items()}
    return polydiff.SampleOutput(state=out, nfe=0)


class _Sloppy:
    import polydiff as _pd

    @_pd.hookimpl
    def polydiff_samplers(self):
        import polydiff

        yield polydiff.SamplerSpec(name="sloppy", summary="broken on purpose", function=_sloppy_sampler)


def test_the_kit_fails_a_broken_component(temporary_plugin):
    from polydiff.testing import check_plugin

    manager = temporary_plugin(_Sloppy(), name="sloppy")
    results = {r.id: r for r in check_plugin("sloppy", manager=manager,
                                              expected_failures={"check_nfe_reported": "known"})}
    assert results["sampler[sloppy]-check_seeded_determinism"].status == "FAIL"
    assert results["sampler[sloppy]-check_nfe_reported"].status == "XFAIL"
    assert results["sampler[sloppy]-check_rejects_unsupported_family"].status == "FAIL"
    assert results["sampler[sloppy]-check_signature_matches_protocol"].status == "PASS"
