"""The errors that mean "what you asked for or gave cannot be used", as opposed to a bug.

Every such error derives from ``Dinov3Error`` and says in its message what was wrong and what is
expected. Front ends show that message alone (the `dinov3` command exits 2); any other exception
is a bug and keeps its traceback. Each class also derives from the built-in type its callers
already expect (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` still works.
"""

from __future__ import annotations


class Dinov3Error(Exception):
    """A problem with the user's input, files or set-up, fully explained by its message."""


class ConfigError(Dinov3Error, ValueError):
    """A setting that is not valid: an unknown name, a value out of range or of the wrong kind."""


class NotFound(Dinov3Error, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputTaken(Dinov3Error, FileExistsError):
    """An output would overwrite an earlier run's (the user decides, with --overwrite)."""


class OutputError(Dinov3Error, OSError):
    """An output cannot be written: a folder that is a file or read-only, a missing video encoder."""


class MissingExtra(Dinov3Error, ImportError):
    """An optional dependency that the requested feature needs is not installed; the message says how."""
