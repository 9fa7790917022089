"""The text plugin through the polydiff conformance kit."""
from polydiff.testing import PluginConformance


class TestTextPlugin(PluginConformance):
    plugin = "text"
