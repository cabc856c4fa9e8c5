"""pytest set-up shared by every test module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "local"
if str(LOCAL) not in sys.path:
    sys.path.insert(0, str(LOCAL))

# Tools run by tests in subprocesses find the package the same way.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(LOCAL)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ.setdefault("LC_ALL", "C")
os.environ.setdefault("PYTHONIOENCODING", "UTF-8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


#: Test modules that take minutes, longest first. tests/run.sh runs the suite
#: in two pytest-xdist workers, a module to a worker (--dist loadfile, in this
#: order: --no-loadscope-reorder), so these start first and the short modules
#: fill the other worker meanwhile. The order changes no test's outcome: each
#: module's fixtures are its own.
LONG_FIRST = (
    "test_recipe_mini_nano.py",
    "test_recipe_mini.py",
    "test_train_decode.py",
    "test_release_nano_recipe.py",
    "test_vocab.py",
    "test_nano_train.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
