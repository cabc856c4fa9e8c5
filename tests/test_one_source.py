"""One source per contract (issue 14 item 5): one checkpoint reader, one list of
model families, one twin-writing skeleton, no private helper borrowed across
modules."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from funasr_recipe import checkpoint, jsonl, modeldir, training
from funasr_recipe.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "local" / "funasr_recipe"
SOURCES = sorted([*PACKAGE.glob("*.py"), *(ROOT / "local").glob("*.py"),
                  *(ROOT / "bench").glob("*.py")])


def _calls(tree: ast.AST, name: str) -> list[int]:
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == name
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]


def test_torch_load_only_in_the_checkpoint_reader() -> None:
    found = {str(p.relative_to(ROOT)): _calls(ast.parse(p.read_text()), "load")
             for p in SOURCES}
    assert {p: lines for p, lines in found.items() if lines} == {
        "local/funasr_recipe/checkpoint.py": found["local/funasr_recipe/checkpoint.py"]}


def test_twins_import_no_private_names() -> None:
    bad = []
    for p in PACKAGE.glob("twin_*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                      .startswith("funasr_recipe")):
                bad += [f"{p.name}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []


def test_one_list_of_model_families() -> None:
    assert set(jsonl.FAMILIES) == set(modeldir.FAMILIES)
    literals = []
    for p in SOURCES:
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FAMILIES"
                                                     for t in node.targets)
                    and isinstance(node.value, (ast.Tuple, ast.List, ast.Set))):
                literals.append(f"{p.name}:{node.lineno}")
    assert literals == []
    r = subprocess.run([sys.executable, str(ROOT / "local" / "make_twin.py"), "--help"],
                       capture_output=True, text=True, cwd=ROOT)
    assert "{" + ",".join(sorted(modeldir.FAMILIES)) + "}" in r.stdout


def test_twin_writers_share_one_skeleton() -> None:
    for name in ("twin_paraformer.py", "twin_nano.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and n.module == "twin_common" for a in n.names}
        assert {"begin_twin", "finish_twin", "save_model", "write_config"} <= imported, name
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and n.module in ("twin_paraformer", "twin_nano")], name


# ----------------------------------------------------------------------------
# The checkpoint reader

STATE = {"enc.weight": torch.arange(6.0).reshape(2, 3), "dec.bias": torch.ones(2)}


@pytest.mark.parametrize("layout", [
    lambda s: s,
    lambda s: {"state_dict": s, "optimizer": {"lr": 0.1}, "epoch": 3},
    lambda s: {"model_state_dict": s},
    lambda s: {"model": s},
    lambda s: {"state_dict": {"module." + k: v for k, v in s.items()}},
    lambda s: {"module": s, "buffer_names": [], "ds_version": "0.16"},  # DeepSpeed model_states
])
@pytest.mark.parametrize("mmap", [False, True])
def test_load_state_unwraps_every_layout(tmp_path: Path, layout, mmap: bool) -> None:
    p = tmp_path / "model.pt"
    torch.save(layout(STATE), p)
    got = checkpoint.load_state(p, mmap=mmap)
    assert sorted(got) == sorted(STATE)
    assert all(torch.equal(got[k], STATE[k]) for k in STATE)
    assert checkpoint.readable(p)
    assert training.load_state is checkpoint.load_state


def test_load_state_names_torn_and_foreign_files(tmp_path: Path) -> None:
    good = tmp_path / "model.pt.ep2"
    torch.save({"state_dict": STATE}, good)
    torn = tmp_path / "model.pt.ep3"
    torn.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "config.yaml"
    text.write_text("model: Paraformer\n")
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    for p, what in ((torn, "not a readable torch checkpoint"),
                    (text, "not a torch checkpoint"),
                    (listed, "not a model checkpoint"),
                    (tmp_path / "none.pt", "checkpoint not found")):
        with pytest.raises(DataError, match=what) as e:
            checkpoint.load_state(p)
        assert str(p) in str(e.value)
        assert not checkpoint.readable(p)


class Code:  # pickled by reference: loading it would run this module's code
    pass


def test_load_state_refuses_pickled_code(tmp_path: Path) -> None:
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": STATE, "hook": Code()}, p, pickle_module=pickle)
    with pytest.raises(DataError, match=r"refers to code \(.*Code\).*weights_only=True"):
        checkpoint.load_state(p)
