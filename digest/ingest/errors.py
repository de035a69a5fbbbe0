"""The one error every reader raises: a location could not be read or parsed."""

from __future__ import annotations


class ReadError(Exception):
    """A location could not be read or parsed; the message says why, for the editor."""
