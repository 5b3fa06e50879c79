"""Specific, actionable exceptions. Every message says what was wrong and what is accepted."""
from __future__ import annotations


class NagError(Exception):
    """Base class for all errors raised by nag."""


class UnknownNameError(NagError, KeyError):
    """A registry lookup with a name nobody registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(NagError):
    """Two sources claim the same registry name."""


class PluginError(NagError, ImportError):
    """A registered plugin (entry point) that cannot be imported."""


class InvalidArchError(NagError, ValueError):
    """An architecture (string or value) that the space does not contain."""


class ArchNotInTableError(NagError, KeyError):
    """A valid architecture that a benchmark table has no row for."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(NagError, ValueError):
    """A config value or key that nag cannot use."""


class MissingDataError(NagError, FileNotFoundError):
    """A dataset or benchmark file that is not where the config says."""


class CheckpointMismatchError(NagError, ValueError):
    """A checkpoint made for another space, SDE or network."""


class IncompatibleComponentsError(NagError, ValueError):
    """Components that cannot be composed (e.g. predictor and prior with different SDEs)."""


class NotFiniteSpaceError(NagError, TypeError):
    """enumerate() on a space too large to list."""


class EvaluationError(NagError, RuntimeError):
    """An evaluation that could not finish, e.g. its worker died on every try."""


class BadDataError(NagError, ValueError):
    """Data that is there but unusable as the config asks: an unreadable image, mixed channel
    counts or sizes, a class with too few images for the split."""
