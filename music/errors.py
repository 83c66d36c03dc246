"""Errors of the vqcpc package. Library code raises these; only the CLI turns them into messages."""


class VqcpcError(Exception):
    """Base class of every error vqcpc raises on purpose."""


class InputError(VqcpcError):
    """A file, a corpus name or a stream that cannot be read into the four-voice grid."""


class ModelError(VqcpcError):
    """A model directory that is missing, incomplete or inconsistent."""
