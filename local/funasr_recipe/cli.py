"""What every ``local/*.py`` tool shares: logging set-up and error reporting."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import RecipeError

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        stream=sys.stderr, force=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Option defaults shown, and the tool's docstring (examples) kept as written.

    A help text that already says its default, or an option without one, is
    left as it is (no "(default: None)").
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or action.required:
            return text
        return super()._get_help_string(action)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def run(body: Callable[[argparse.Namespace], int | None], ap: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run ``body``; a :class:`RecipeError` (bad data, a step that
    failed) becomes ``ERROR: …`` and exit 1."""
    args = ap.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return body(args) or 0
    except RecipeError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


def named_paths(items: Sequence[str], option: str, what: str) -> dict[str, str]:
    """``NAME=PATH`` option values (repeatable ``--report`` etc.) as a dict; a
    value without ``=`` or a name is a :class:`DataError` naming it."""
    from .errors import DataError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise DataError(f"{option} {item}: expected NAME={what}")
        out[name] = path
    return out


def add_pretrain_options(ap: argparse.ArgumentParser) -> None:
    """What the twin's pre-training tools share: ``--model-dir``, ``--threads``
    (default: the job's CPU allocation) and ``--out``."""
    from .resources import allocated_cpus

    ap.add_argument("--model-dir", type=Path, required=True, help="the Nano twin's model dir")
    ap.add_argument("--threads", type=int, default=allocated_cpus(),
                    help="torch threads (default: the job's CPU allocation, here %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="output dir")


def first_to_last(info: dict, suffix: str, skip: Sequence[str] = ()) -> list[tuple[str, float, float]]:
    """(name, first, last) of each ``<name><suffix>`` figure of a pre-training's
    first and last epoch (``info["epochs"]``), for the tool's closing lines."""
    first, last = info["epochs"][0], info["epochs"][-1]
    return [(key[:-len(suffix)], first[key], last[key]) for key in first
            if key.endswith(suffix) and key not in skip]


def add_set_options(ap: argparse.ArgumentParser) -> None:
    """``--data-dir``/``--out`` in pairs: several sets through one model load (one
    start-up of funasr or of an engine per job, not per set)."""
    ap.add_argument("--data-dir", type=Path, action="append", default=[],
                    help="Kaldi data dir to decode (required; repeatable, paired with --out)")
    ap.add_argument("--out", type=Path, action="append", default=[],
                    help="output dir (required; one per --data-dir, in the same order)")


def set_pairs(data_dirs: Sequence[Path], outs: Sequence[Path]) -> list[tuple[Path, Path]]:
    """The ``(data dir, out)`` pairs of :func:`add_set_options`; counts that differ or an
    ``--out`` given twice are a :class:`DataError`."""
    from .errors import DataError

    if len(data_dirs) != len(outs):
        raise DataError(f"{len(data_dirs)} --data-dir but {len(outs)} --out: give "
                        "one --out for each --data-dir, in the same order")
    if len({Path(o).resolve() for o in outs}) != len(outs):
        raise DataError("the same --out twice: each set needs its own output dir")
    return list(zip(data_dirs, outs))
