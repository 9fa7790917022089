"""Exceptions raised by polydiff.

Every message names both sides of a mismatch and, where there is one, the fix: the
plugin and distribution behind a duplicate name, the field and process of a wrong
pairing, the key and allowed values of a bad config entry.
"""
from __future__ import annotations


class PolydiffError(Exception):
    """Base class of every error polydiff raises on purpose."""


class PluginLoadError(PolydiffError):
    """A plugin failed to import, to register, or raised inside a registration hook."""


class DuplicateNameError(PolydiffError):
    """Two plugins registered a component of the same kind under the same name."""


class UnknownComponentError(PolydiffError, KeyError):
    """A modality, corruption, schedule, denoiser, sampler or metric name is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IncompatibleSpaceError(PolydiffError):
    """A corruption process or sampler was paired with a field whose space or family it cannot handle."""


class ConfigError(PolydiffError):
    """An experiment config is malformed: the message names the key, the value and what is allowed."""


class DataMissingError(PolydiffError):
    """A data set is not installed; the message says what to install or generate."""


class CheckpointError(PolydiffError):
    """A checkpoint or run folder is missing, incomplete or corrupted; the message names the file."""


class NonFiniteLossError(PolydiffError):
    """Training produced a NaN or infinite loss; the message names the step and the last good checkpoint."""
