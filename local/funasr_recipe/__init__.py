"""Shared code of the funasr-recipe tools in ``local/``.

Every ``local/*.py`` tool is a thin command line over this package; tests in
``tests/`` exercise the package directly and the tools through subprocesses.
"""

__version__ = "0.1.0"
