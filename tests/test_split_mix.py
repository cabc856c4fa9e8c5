"""local/split_data.py and local/mix_stages.py (hours-based staged mixing)."""

from __future__ import annotations

import random
import re
import subprocess

import pytest

from funasr_recipe.datadir import Utt, load_datadir, split_keys, write_datadir
from funasr_recipe.errors import DataError
from funasr_recipe.tables import read_table
from funasr_recipe.mixing import StageMix, load_plan, mix_stage, sample_hours
from helpers import ROOT, run_tool


def fake_pool(tag: str, n: int, spks: int = 5, seed: int = 0) -> list[Utt]:
    rng = random.Random(seed)
    utts = [Utt(key=f"{tag}{i % spks}-{i:05d}", spk=f"{tag}{i % spks}", wav=f"/a/{tag}{i}.wav",
                text="x", dur=round(rng.uniform(1.0, 4.0), 3)) for i in range(n)]
    return sorted(utts, key=lambda u: u.key)


def hours(utts):
    return sum(u.dur for u in utts) / 3600


def test_split_ratios_deterministic_and_heldout():
    utts = fake_pool("s", 1000)
    parts = split_keys(utts, [8, 1, 1], seed=3, heldout_spks={"s4"})
    assert [len(p) for p in parts] == [800, 100, 100]
    assert sorted(sum(parts, [])) == sorted(u.key for u in utts)
    spk = {u.key: u.spk for u in utts}
    assert not any(spk[k] == "s4" for k in parts[0])  # held-out speaker never trained on
    assert split_keys(utts, [8, 1, 1], seed=3, heldout_spks={"s4"}) == parts
    assert split_keys(utts, [8, 1, 1], seed=4, heldout_spks={"s4"}) != parts


def test_split_bad_ratios():
    with pytest.raises(DataError, match="ratios"):
        split_keys(fake_pool("s", 10), [1], seed=0)


def test_split_cli(tmp_path):
    d = tmp_path / "all"
    write_datadir(d, fake_pool("s", 50))
    (tmp_path / "held").write_text("s1\n")
    r = run_tool("split_data.py", "--src", d, "--out-prefix", tmp_path / "x", "--heldout-spk",
                 tmp_path / "held")
    assert r.returncode == 0, r.stderr
    sizes = {n: len(read_table(tmp_path / f"x_{n}" / "text")) for n in ("train", "valid", "test")}
    assert sizes == {"train": 40, "valid": 5, "test": 5}
    assert "s1" not in read_table(tmp_path / "x_train" / "utt2spk").values()


def test_sample_hours_close_to_target():
    pool = fake_pool("g", 2000)
    got, reps = sample_hours(pool, 0.5, random.Random(0), replace=False)
    assert reps == 0 and abs(hours(got) - 0.5) * 3600 <= 2.0  # within half the longest utt
    assert len({u.key for u in got}) == len(got)


def test_stage_ratios_are_hours_not_counts():
    general = fake_pool("g", 3000)
    # domain utterances are three times as long as general ones on average
    domain = [Utt(u.key.replace("g", "d"), u.spk.replace("g", "d"), u.wav, u.text, u.dur * 3)
              for u in fake_pool("g", 400, seed=1)]
    for g, d in ((50, 50), (20, 80)):
        r = mix_stage(StageMix("s", g, d), general, domain, seed=0, on_short="error")
        assert r.domain_utts == 400
        assert r.general_hours / (r.general_hours + r.domain_hours) == pytest.approx(
            g / (g + d), abs=0.005)
        assert r.general_utts != r.domain_utts * g // d  # counts would be wrong here
    r = mix_stage(StageMix("s", 0, 100), general, domain, seed=0, on_short="error")
    assert r.general_utts == 0 and r.general_share == 0


def test_short_general_pool_error_or_replace():
    general = fake_pool("g", 20)
    domain = fake_pool("d", 200)
    with pytest.raises(DataError, match="general pool has only"):
        mix_stage(StageMix("stage1", 50, 50), general, domain, seed=0, on_short="error")
    r = mix_stage(StageMix("stage1", 50, 50), general, domain, seed=0, on_short="replace")
    assert r.repeats > 0 and abs(r.general_share - 50) < 2
    keys = [u.key for u in r.utts]
    assert len(set(keys)) == len(keys) and any("-rep2" in k for k in keys)


def test_key_clash_between_pools():
    pool = fake_pool("g", 100)
    with pytest.raises(DataError, match="both the general and the domain"):
        mix_stage(StageMix("s", 50, 50), pool, pool, seed=0, on_short="error")


def test_plan_in_conf_is_the_documented_one():
    plan = load_plan(ROOT / "conf" / "stages.yaml")
    assert [(s.name, s.general, s.domain) for s in plan.stages] == [
        ("stage1", 50, 50), ("stage2", 20, 80), ("stage3", 0, 100)]


def test_bad_plan(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("stages:\n  - {name: a, general: -1, domain: 5}\n")
    with pytest.raises(DataError, match="non-negative"):
        load_plan(p)


@pytest.mark.parametrize("text, message", [
    ("stages:\n  - name: a\n    general: 1\n   domain: 2\n", ":4:4: not valid YAML ("),
    ("stages: [\n", ":2:1: not valid YAML (while parsing a flow node expected the node content"),
    ("stages:\n\t- name: a\n", ":2:1: not valid YAML ("),
    ("- just a list\n", "expected a mapping (key: value lines) at the top level, got list"),
    ("seed: 0\n", "'stages' must be a list of stages"),
    ("stages: []\n", "'stages' must be a list of stages"),
    ("stages:\n  - stage1\n", "stages[0] needs a name, general and domain (got 'stage1')"),
    ("stages:\n  - {name: a, general: x, domain: 5}\n", "stage 'a': general and domain"),
    ("stages:\n  - {name: a b, general: 1, domain: 5}\n", "stage name 'a b': use letters"),
    ("stages:\n  - {name: a, general: 1, domain: 5}\n  - {name: a, general: 0, domain: 1}\n",
     "stage names must be unique"),
    ("seed: one\nstages:\n  - {name: a, general: 1, domain: 5}\n", "seed must be a whole number"),
    ("on_short_general: maybe\nstages:\n  - {name: a, general: 1, domain: 5}\n",
     "on_short_general must be one of"),
])
def test_bad_plan_is_one_line_naming_the_file(tmp_path, text, message):
    p = tmp_path / "plan.yaml"
    p.write_text(text)
    with pytest.raises(DataError, match=re.escape(message)):
        load_plan(p)
    r = run_tool("mix_stages.py", "--plan", p, "--list-stages")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"ERROR: {p}") \
        and message in r.stderr, r.stderr


def test_list_stages(tmp_path):
    r = run_tool("mix_stages.py", "--plan", ROOT / "conf" / "stages.yaml", "--list-stages")
    assert r.returncode == 0 and r.stdout == "stage1 stage2 stage3\n"
    r = run_tool("mix_stages.py", "--plan", ROOT / "conf" / "stages.yaml")
    assert r.returncode == 1 and "--general and --domain" in r.stderr


def test_run_sh_bad_plan_is_one_line(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("stages: [\n")
    r = subprocess.run(["bash", ROOT / "run.sh", "--stage-plan", p, "--stage", "9",
                        "--expdir", tmp_path / "exp", "--datadir", tmp_path / "data"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Traceback" not in out and f"ERROR: {p}:2:1: not valid YAML" in out, out


def test_mix_cli(tmp_path):
    write_datadir(tmp_path / "g", fake_pool("g", 400))
    write_datadir(tmp_path / "d", fake_pool("d", 100))
    r = run_tool("mix_stages.py", "--plan", ROOT / "conf" / "stages.yaml", "--general",
                 tmp_path / "g", "--domain", tmp_path / "d", "--out-prefix", f"{tmp_path}/")
    assert r.returncode == 0, r.stderr
    assert "general:domain(h)" in r.stdout and "stage3" in r.stdout
    for name in ("stage1", "stage2", "stage3"):
        load_datadir(tmp_path / f"{name}_train")  # valid data dirs
    s3 = read_table(tmp_path / "stage3_train" / "utt2spk")
    assert all(s.startswith("d") for s in s3.values())
    summary = (tmp_path / "mix_summary.tsv").read_text().splitlines()
    assert summary[0].startswith("stage\tgeneral_utts") and len(summary) == 4
    # deterministic
    first = (tmp_path / "stage1_train" / "wav.scp").read_text()
    run_tool("mix_stages.py", "--general", tmp_path / "g", "--domain", tmp_path / "d",
             "--plan", ROOT / "conf" / "stages.yaml", "--out-prefix", f"{tmp_path}/")
    assert (tmp_path / "stage1_train" / "wav.scp").read_text() == first
