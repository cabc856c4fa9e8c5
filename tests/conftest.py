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
