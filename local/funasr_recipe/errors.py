"""The recipe's exceptions: every failure a tool reports as ``ERROR: …`` (exit 1)
rather than a traceback is a :class:`RecipeError`."""

from __future__ import annotations


class RecipeError(Exception):
    """A failure the recipe explains: the message says what went wrong and what to do."""


class DataError(RecipeError):
    """Bad input (data, configs, model dirs): the message names the file, line or
    key and what to do."""


class RunError(RecipeError):
    """A step could not run or did not finish: a trainer's exit code, a missing
    optional dependency, an engine that is not installed."""
