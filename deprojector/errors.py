"""Specific exceptions raised by the deprojector package.

Pages and CLIs catch `DeprojectorError` once and show its message; every message names the
file or argument, what was found, what was expected and how to fix it.
"""


class DeprojectorError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(DeprojectorError):
    """A checkpoint file is missing, half-written, corrupt or of an unknown layout."""


class ConfigMismatchError(CheckpointError):
    """The tensors of a checkpoint (or a model) do not match its configuration."""


class NonFiniteWeightsError(CheckpointError):
    """A checkpoint holds NaN or Inf weights."""


class InputShapeError(DeprojectorError, ValueError):
    """An input array or tensor has the wrong shape or dtype."""


class IncompatiblePipelineError(DeprojectorError):
    """A Stable Diffusion folder is missing, malformed, or its text width is not the deprojector's D."""
