"""The one error type for impossible options, shared by every layer (no imports: the lowest layer).

:class:`ConfigError` is a ``ValueError`` whose message is one line naming the key, so the CLI can
print it without a traceback and a Python user sees the same words.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """An impossible configuration or option value (reported in one line, no traceback)."""
