"""The image plugin through the polydiff conformance kit."""
from polydiff.testing import PluginConformance


class TestImagePlugin(PluginConformance):
    plugin = "image"
