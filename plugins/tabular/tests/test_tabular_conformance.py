"""The tabular plugin through the polydiff conformance kit."""
from polydiff.testing import PluginConformance


class TestTabularPlugin(PluginConformance):
    plugin = "tabular"
