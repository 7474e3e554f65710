"""The error type of the electrophysiology stage (the CLI prints these as one line)."""

from stdann.errors import StdannError


class EphysError(StdannError, ValueError):
    """Input that would give a wrong number, or a run that cannot be analysed; the message says
    what is wrong and what to do."""
