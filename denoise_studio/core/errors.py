"""Errors a user can act on: each message is one sentence saying what is wrong and how to fix it."""


class DenoiseError(Exception):
    """Base of every error Denoise Studio shows to a user (CLI: one line, exit code 2)."""


class SpecFormatError(DenoiseError):
    """A file or document that is not a readable architecture spec."""


class SpecInvalidError(DenoiseError):
    """A spec that parses but fails validation; `issues` holds every problem."""

    def __init__(self, issues):
        self.issues = issues
        first = issues[0]
        where = f"block {first.block}: " if first.block is not None else ""
        more = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
        super().__init__(f"invalid network: {where}{first.message} Fix: {first.fix}{more}")


class CheckpointError(DenoiseError):
    """A checkpoint or run folder that cannot be loaded."""


class ImageError(DenoiseError):
    """An image file that cannot be read or written."""


class DataError(DenoiseError):
    """A training data source that yields no usable images."""


class DeviceError(DenoiseError):
    """A device that is not available in this torch build or on this machine."""
