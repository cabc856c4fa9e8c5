"""Atomic outputs: a file or directory appears whole or not at all, and a failure
leaves the previous one as it was, with nothing half-written beside it."""

from __future__ import annotations

import pytest

from funasr_recipe.atomic import atomic_dir, atomic_write


def test_atomic_write_replaces_whole_or_keeps_the_old(tmp_path):
    f = tmp_path / "sub" / "out.txt"
    with atomic_write(f) as h:
        h.write("first\n")
    assert f.read_text() == "first\n"
    with pytest.raises(RuntimeError):
        with atomic_write(f) as h:
            h.write("half")
            raise RuntimeError("crash")
    assert f.read_text() == "first\n"
    assert sorted(p.name for p in f.parent.iterdir()) == ["out.txt"]


def test_atomic_dir_replaces_whole_or_keeps_the_old(tmp_path):
    out = tmp_path / "export" / "onnx"
    with atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and ".onnx" not in str(tmp)
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with atomic_dir(out) as tmp:        # a new build replaces the old one, files and all
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as tmp:
            (tmp / "c").write_text("3")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["onnx"], "staging dir left behind"
