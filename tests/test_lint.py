"""Static checks of the whole tree: ruff (ruff.toml's correctness rules) on the
Python, shellcheck (warnings and errors) on every shell script. CI installs
shellcheck (.ci/run); elsewhere its test skips when it is absent, except under
CI=true, where a missing linter is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL_SCRIPTS = sorted({*ROOT.glob("*.sh"), *ROOT.glob("utils/*.sh"), *ROOT.glob("local/*.sh"),
                        *ROOT.glob("tests/*.sh"), *ROOT.glob("bench/*.sh"), *ROOT.glob(".ci/*.sh"),
                        ROOT / ".ci" / "run"})


def _tool(name: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (CI installs it: .ci/run)")
        pytest.skip(f"{name} not installed (apt-get install {name} / pip install {name})")
    return exe


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "local", "tests", "bench"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_clean() -> None:
    r = subprocess.run([_tool("shellcheck"), "-S", "warning", "-x",
                        *map(str, SHELL_SCRIPTS)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_linters_see_a_defect(tmp_path: Path) -> None:
    """The two checks above can fail: each linter flags a planted defect."""
    bad_py = tmp_path / "bad.py"
    bad_py.write_text("import os\nprint(undefined_name)\n")
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "--config", str(ROOT / "ruff.toml"),
                        str(bad_py)], capture_output=True, text=True)
    assert r.returncode != 0 and "F821" in r.stdout
    bad_sh = tmp_path / "bad.sh"
    bad_sh.write_text('#!/usr/bin/env bash\nfor f in $(ls *.txt); do rm $f; done\n')
    r = subprocess.run([_tool("shellcheck"), "-S", "warning", str(bad_sh)], capture_output=True,
                       text=True)
    assert r.returncode != 0


def test_no_module_shadows_the_standard_library() -> None:
    """A package module named like a stdlib one (io, types, ...) is one relative
    import away from the wrong module; tools' names too, as local/ is on sys.path."""
    names = {p.stem for p in (ROOT / "local" / "funasr_recipe").glob("*.py")}
    names |= {p.stem for p in (ROOT / "local").glob("*.py")}
    assert not names & set(sys.stdlib_module_names), sorted(names & set(sys.stdlib_module_names))


def test_tool_failures_are_recipe_errors() -> None:
    """cli.run turns every RecipeError (bad data, a failed step) into 'ERROR: …';
    DataError is the bad-input kind of it."""
    sys.path.insert(0, str(ROOT / "local"))
    from funasr_recipe import cli
    from funasr_recipe.errors import DataError, RecipeError, RunError

    assert issubclass(DataError, RecipeError) and issubclass(RunError, RecipeError)

    def fail(_args):
        raise RunError("the trainer exited with code 3")

    assert cli.run(fail, cli.parser("x"), []) == 1


def test_every_tool_is_a_thin_executable_cli() -> None:
    """Each local/*.py is executable, builds its parser in build_parser() and runs
    through cli.run (one way to report a RecipeError: 'ERROR: …', exit 1)."""
    bad = []
    for tool in sorted((ROOT / "local").glob("*.py")):
        text = tool.read_text(encoding="utf-8")
        why = [w for w, ok in (("not executable", os.access(tool, os.X_OK)),
                               ("no build_parser()", "def build_parser(" in text),
                               ("not through cli.run", "cli.run(" in text),
                               ("no #! line", text.startswith("#!"))) if not ok]
        if why:
            bad.append(f"{tool.name}: {', '.join(why)}")
    assert not bad, bad
