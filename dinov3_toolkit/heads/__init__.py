"""Plug-in heads: the contract a head folder fulfils, and how folders are found and loaded.

See the README section "Write your own head" for a complete example.
"""

from .base import Head, HeadError
from .manifest import HeadManifest, ParamSpec, load_manifest

__all__ = ["Head", "HeadError", "HeadManifest", "ParamSpec", "load_manifest"]
