"""Every `local/*.py --help` example names paths the recipe really creates
(issue 14 item 8).

The layout is read from run.sh itself, not copied here: every path template
it writes or reads under its own directories (``${datadir}``, ``${dumpdir}``,
``${expdir}``, ``${mexp}``, ``${logdir}``, ``${corpus_dir}`` and the
variables it builds from them), with its defaults for those variables, its
literal ``for`` lists for loop variables and the model families for
``${model}``. A file inside such a directory that run.sh does not name must
be one a tool says it writes there (``OUT/<name>`` in its docstring, or a
``* ``name``: ...`` item of a package module's docstring).
Paths outside those directories are the user's (their own data, a
downloaded model) and are not checked, except ``conf/``, which must exist.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from funasr_recipe.modeldir import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "run.sh"
TOOLS = sorted(p for p in (ROOT / "local").glob("*.py"))
ROOT_VARS = ("datadir", "dumpdir", "expdir", "corpus_dir")
_VAR = re.compile(r"\$\{(\w+)\}")


@lru_cache(maxsize=1)
def layout() -> tuple[list[list[re.Pattern]], set[str], set[str]]:
    """run.sh's path templates (as component regexes), the names of the
    top directories they live in, and the file names a tool or run.sh names."""
    text = RUN_SH.read_text()
    defaults = dict(re.findall(r"^(\w+)=([^\s$#]+)", text, re.M))
    # word lists: the model families, the stage plan's stage names (as run.sh gets
    # them: local/check_plan.py on its default plan), lists assigned in run.sh
    # (models="base ${stage_names}"), and each for loop's words
    lists: dict[str, set[str]] = {"model": set(FAMILIES), "stage_names": set()}
    for family in FAMILIES:
        r = subprocess.run([sys.executable, str(ROOT / "local" / "check_plan.py"), "--plan",
                            defaults["stage_plan"], "--train-conf",
                            f"conf/{family}/train.yaml", "--pretrain"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        lists["stage_names"] |= set(r.stdout.split())

    def words_of(words: str) -> set[str]:
        out: set[str] = set()
        for w in words.replace('"', " ").split():
            m = re.fullmatch(r"\$\{(\w+)\}", w)
            if m:
                out |= lists.get(m.group(1)) or ({defaults[m.group(1)]}
                                                 if m.group(1) in defaults else set())
            elif re.fullmatch(r"[\w.-]+", w):
                out.add(w)
        return out

    for var, words in re.findall(r'^\s*(\w+)="([^"/]*)"', text, re.M):
        lists.setdefault(var, set()).update(words_of(words))
    values: dict[str, set[str]] = {"model": set(FAMILIES)}
    for var, words in re.findall(r"\bfor (\w+) in ([^;\n]*)", text):
        values.setdefault(var, set()).update(words_of(words))
    # one of a list's words: last_stage=${stage_names##* }, first=${stage_names%% *}
    for var, lst in re.findall(r"^\s*(\w+)=\$\{(\w+)(?:##\* |%% \*)\}", text, re.M):
        values.setdefault(var, set()).update(lists.get(lst, set()))
    values = {v: w for v, w in values.items() if w}
    # variables assigned a path under the recipe's directories: mexp=${expdir}/${model} ...
    derived: dict[str, set[str]] = {}
    for v, p in re.findall(r"(?:^|[\s;(])(\w+)=\"?(\$\{\w+\}[^\s\";)]*)", text):
        if v not in ROOT_VARS:
            derived.setdefault(v, set()).add(p)
    for v in list(derived):  # keep paths, not copies of other variables (m=${engine_model})
        derived[v] = {p for p in derived[v]
                      if re.match(r"\$\{(\w+)\}", p).group(1) in (*ROOT_VARS, *derived)}
        if not derived[v]:
            del derived[v]
    token = re.compile(r"\$\{(?:%s)\}[^\s\"';)|]*" % "|".join([*ROOT_VARS, *derived]))

    def expand(t: str, depth: int = 0) -> set[str]:
        """Every path ``t`` stands for (a variable assigned several paths: each)."""
        m = next((m for m in _VAR.finditer(t) if m.group(1) in ROOT_VARS or
                  m.group(1) in derived), None)
        if m is None or depth > 8:
            return {t}
        v = m.group(1)
        alts = {defaults[v]} if v in ROOT_VARS else set(derived[v])
        if m.start() > 0 and v in values:  # inside a path it may be a loop's word too
            alts.add(f"${{{v}:loop}}")
        return {x for a in alts for x in expand(t[:m.start()] + a + t[m.end():], depth + 1)}

    templates = []
    tops = {defaults[v].split("/")[0] for v in ROOT_VARS}
    for path in {x.rstrip("/") for t in token.findall(text) for x in expand(t)}:
        parts = []
        for comp in path.split("/"):
            pieces = re.split(r"(\$\{\w+(?::loop)?\})", comp)
            rx = ""
            for piece in pieces:
                m = _VAR.fullmatch(piece.replace(":loop}", "}"))
                if m:
                    vals = values.get(m.group(1))
                    rx += f"(?:{'|'.join(map(re.escape, sorted(vals)))})" if vals else r"[^/]+"
                else:
                    rx += re.escape(piece)
            parts.append(re.compile(rx))
        templates.append(parts)
    names = set(re.findall(r"/([\w.-]+)(?=[\s\"';)|]|$)", text, re.M))
    for tool in TOOLS:  # files a tool says it writes into its output dir
        doc = ast.get_docstring(ast.parse(tool.read_text())) or ""
        names |= set(re.findall(r"\bOUT/([\w.-]+)", doc))
    for module in (ROOT / "local" / "funasr_recipe").glob("*.py"):  # "* ``errors.txt``: ..."
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
        names |= set(re.findall(r"^\s*[*-] ``([\w.-]+)``", doc, re.M))
    return templates, tops, names


def _matches(parts: list[re.Pattern], comps: list[str], prefix: bool) -> bool:
    if len(comps) > len(parts) or (not prefix and len(comps) != len(parts)):
        return False
    return all(p.fullmatch(c) for p, c in zip(parts, comps))


def path_problem(path: str) -> str | None:
    """Why ``path`` (from a help example) is not in the recipe's layout, or None."""
    templates, tops, names = layout()
    if path.startswith(("/", "~")):
        return None  # the user's own input: not the recipe's to name
    comps = [c for c in path.rstrip("/").split("/") if c not in ("", ".")]
    if not comps:
        return None
    if comps[0] == "conf":
        return None if (ROOT / path).exists() else "no such file in conf/"
    if comps[0] not in tops:
        return None  # the user's own input: not the recipe's to name
    if any(_matches(t, comps, prefix=True) for t in templates):
        return None
    if (any(_matches(t, comps[:-1], prefix=False) for t in templates)
            and comps[-1] in names):
        return None
    return "run.sh creates no such path"


def examples(tool: Path) -> list[str]:
    """The example command lines of a tool's --help (continuation lines joined)."""
    r = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip().split("  #")[0].split("# ->")[0]
        if re.match(r"(python3? )?local/\S+\.py\b", line):
            out.append(line)
    return out


def paths_of(command: str) -> list[str]:
    words = shlex.split(command.replace("...", " "), comments=True)
    out = []
    for w in words[1:]:
        for part in w.split("=", 1)[-1:] if not w.startswith("-") else []:
            if "/" in part and not part.startswith(("http", "-")):
                out.append(part)
    return out


@pytest.mark.parametrize("tool", TOOLS, ids=lambda p: p.name)
def test_help_examples_use_the_recipe_layout(tool: Path) -> None:
    bad = []
    for cmd in examples(tool):
        for p in paths_of(cmd):
            why = path_problem(p)
            if why:
                bad.append(f"{p}: {why}  (in: {cmd})")
    assert bad == []


def test_the_layout_check_can_fail() -> None:
    """The check knows the layout: real paths pass, near misses do not."""
    assert path_problem("data/domain_train") is None
    assert path_problem("dump/paraformer/domain_valid.jsonl") is None
    assert path_problem("exp/nano/twin") is None
    assert path_problem("exp/paraformer/decode_stage3_default/domain_test") is None
    assert path_problem("exp/paraformer/decode_stage3/domain_test") is not None  # tagged: decode_<m>_<tag>
    assert path_problem("exp/paraformer/vocab_audit.tsv") is None
    assert path_problem("/data/my_domain") is None and path_problem("models/x") is None
    assert path_problem("exp/paraformer/stage3/model") is None
    assert path_problem("exp/paraformer/pretrain/final.pt") is None  # train.py: OUT/final.pt
    assert path_problem("exp/nano/stage2_model") is not None     # a stage's: exp/<model>/<stage>/model
    assert path_problem("exp/paraformer/stage9") is not None     # not a stage of the plan
    assert path_problem("exp/paraformer/stage3/final.ckpt") is not None
    assert path_problem("exp/twin/nano") is not None            # the twin is exp/<model>/twin
    assert path_problem("dump/general/train.jsonl") is not None  # jsonl: dump/<model>/<set>.jsonl
    assert path_problem("data/lang/tokens.txt") is not None
    assert path_problem("exp/whisper/twin") is not None          # no such family
    assert path_problem("conf/paraformer/nope.yaml") is not None
