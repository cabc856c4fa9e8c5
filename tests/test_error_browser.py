"""The error browser: a static page per decoded test set, checked in a real
headless browser (Debian's chromium) against local/score.py's counts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from funasr_recipe.datadir import Utt, write_datadir
from helpers import ROOT, run_tool, write_wav

REFS = {
    "spk1-a": "病人做心电图",
    "spk1-b": "他有高血压",
    "spk1-c": "注射胰岛素 check blood pressure",
    "spk2-d": "今天天气很好",
    "spk2-e": "明天下雨",
    "spk2-f": "超市<晚上>关门 & \"quote\"",     # HTML-special characters
}
# base: many errors; stage3: some better, two worse (one missing), one unchanged
BASE = {"spk1-a": "病人做心跳图", "spk1-b": "他有高", "spk1-c": "注射胰岛素 check blood",
        "spk2-d": "今天天气很好", "spk2-e": "明天下雨了吧", "spk2-f": "超市晚上关门 quote"}
STAGE3 = {"spk1-a": "病人做心电图", "spk1-b": "他有高血压", "spk1-c": "注射岛素 check blood pressure",
          "spk2-d": "今天天很好", "spk2-f": "超市晚上关门 quote"}          # spk2-e missing
TERMS = ["心电图", "高血压", "胰岛素", "blood pressure"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def need_chromium() -> str:
    path = chromium()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; CI must install it (.ci/run: "
                        "apt-get install -y chromium) so the error browser is tested")
        pytest.skip("chromium is not installed (apt-get install -y chromium): the error "
                    "browser's page cannot be checked in a real browser here")
    return path


def browser(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-dev-shm-usage", "--no-first-run", "--mute-audio",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Rows(HTMLParser):
    """The utterance rows of a dumped DOM: their data-* attributes, in order."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self.audio: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "utt" in (a.get("class") or "").split():
            self.rows.append(a)
        elif tag == "body":
            self.body = a
        elif tag == "audio":
            self.audio.append(a.get("src", ""))


def dom(page: Path, fragment: str = "") -> Rows:
    r = browser("--dump-dom", page.resolve().as_uri() + fragment)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = Rows()
    rows.feed(r.stdout)
    assert rows.body.get("data-shown") is not None, "the page's script did not run"
    return rows


def make_set(root: Path) -> tuple[Path, Path, Path, Path]:
    utts = []
    for i, (key, text) in enumerate(REFS.items()):
        wav = write_wav(root / "wav dir" / f"{key}.wav", 0.3, seed=i)   # a space in the path
        utts.append(Utt(key, key.split("-")[0], str(wav), text, 0.3))
    write_datadir(root / "data" / "domain_test", utts)
    base, st3 = root / "base.txt", root / "stage3.txt"
    base.write_text("".join(f"{k} {v}\n" for k, v in BASE.items()), encoding="utf-8")
    st3.write_text("".join(f"{k} {v}\n" for k, v in STAGE3.items()), encoding="utf-8")
    terms = root / "terms.txt"
    terms.write_text("\n".join(TERMS) + "\n", encoding="utf-8")
    return root / "data" / "domain_test", base, st3, terms


def score_details(data: Path, hyp: Path, tmp: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """score.py's summary line and per-utterance (sub, del, ins) from --details."""
    details = tmp / f"{hyp.stem}.details"
    p = run_tool("score.py", "--ref", data / "text", "--hyp", hyp, "--details", details,
                 "--bootstrap", "0")
    assert p.returncode == 0, p.stderr
    per = {}
    for line in details.read_text(encoding="utf-8").splitlines():
        m = re.match(r"(\S+) #csid (\d+) (\d+) (\d+) (\d+)$", line)
        if m:
            c, s, i, d = map(int, m.groups()[1:])
            per[m.group(1)] = (s, d, i)
    return p.stdout.splitlines()[0], per


@pytest.mark.slow
def test_two_systems_in_a_real_browser(tmp_path):
    need_chromium()
    data, base, st3, terms = make_set(tmp_path)
    out = tmp_path / "exp" / "error_browser" / "domain_test.html"
    p = run_tool("error_browser.py", "--data", data, "--hyp", f"base={base}",
                 "--hyp", f"stage3={st3}", "--terms", terms, "--out", out)
    assert p.returncode == 0, p.stderr
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text     # nothing fetched from anywhere
    assert "<link" not in text and "src=\"http" not in text

    rows = dom(out).rows
    assert sorted(r["data-key"] for r in rows) == sorted(REFS)   # every utterance, once
    for j, hyp in enumerate((base, st3)):
        summary, per = score_details(data, hyp, tmp_path)
        assert summary in text                                   # score.py's totals on the page
        for r in rows:
            s, d, i = per[r["data-key"]]
            assert (int(r[f"data-sub-{j}"]), int(r[f"data-del-{j}"]),
                    int(r[f"data-ins-{j}"])) == (s, d, i), r["data-key"]
            assert int(r[f"data-err-{j}"]) == s + d + i
    # default view: the utterances that changed first, the biggest change first
    deltas = [int(r["data-delta"]) for r in rows]
    changed = [abs(x) for x in deltas if x]
    assert deltas[:len(changed)] == [x for x in deltas if x] and changed == sorted(changed,
                                                                                   reverse=True)
    assert not any(deltas[len(changed):])
    by_key = {r["data-key"]: r for r in rows}
    assert int(by_key["spk2-e"]["data-delta"]) > 0 and by_key["spk2-e"]["data-missing-1"] == "1"
    assert by_key["spk1-b"]["data-termerr-0"] == "1" and by_key["spk1-b"]["data-termerr-1"] == "0"
    # audio: relative links that resolve to the wavs (a space in the path, percent-encoded)
    audio = dom(out).audio
    assert len(audio) == len(REFS) and all(a.startswith("../../wav%20dir/") for a in audio)

    # the page's own filters and sorting, driven through the URL fragment
    shown = dom(out, "#type=del&sys=1&sort=errors")
    visible = [r for r in shown.rows if "hidden" not in r]
    assert {r["data-key"] for r in visible} == {k for k in REFS
                                               if int(by_key[k]["data-del-1"]) > 0}
    assert shown.body["data-shown"] == str(len(visible))
    errs = [int(r["data-err-1"]) for r in visible]
    assert errs == sorted(errs, reverse=True)
    worse = [r for r in dom(out, "#type=worse").rows if "hidden" not in r]
    assert {r["data-key"] for r in worse} == {"spk2-d", "spk2-e"}
    terms_only = [r for r in dom(out, "#type=term&sys=0").rows if "hidden" not in r]
    assert {r["data-key"] for r in terms_only} == {"spk1-a", "spk1-b", "spk1-c"}

    shot = tmp_path / "error_browser.png"
    r = browser(f"--screenshot={shot}", "--window-size=1400,900", out.resolve().as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"


def test_embedded_audio_stands_alone(tmp_path):
    need_chromium()
    data, base, _, _ = make_set(tmp_path)
    out = tmp_path / "page.html"
    p = run_tool("error_browser.py", "--data", data, "--hyp", f"base={base}", "--audio", "embed",
                 "--out", out)
    assert p.returncode == 0, p.stderr
    rows = dom(out)
    assert len(rows.rows) == len(REFS) and "data-delta" in rows.rows[0]
    assert all(a.startswith("data:audio/wav;base64,") for a in rows.audio)
    assert len(rows.audio) == len(REFS)
    # one system: most errors first
    errs = [int(r["data-err-0"]) for r in rows.rows]
    assert errs == sorted(errs, reverse=True)


def test_embed_limit_and_bad_input(tmp_path):
    data, base, st3, _ = make_set(tmp_path)
    out = tmp_path / "page.html"
    p = run_tool("error_browser.py", "--data", data, "--hyp", f"base={base}", "--audio", "embed",
                 "--embed-max-mb", "0.001", "--out", out)
    assert p.returncode == 1 and "--audio link" in p.stderr and not out.exists()
    p = run_tool("error_browser.py", "--data", data, "--hyp", str(base), "--out", out)
    assert p.returncode == 1 and "NAME=PATH" in p.stderr
    p = run_tool("error_browser.py", "--data", data, "--hyp", f"a={base}", "--hyp", f"b={st3}",
                 "--hyp", f"c={st3}", "--out", out)
    assert p.returncode == 1 and "one system or two" in p.stderr
    p = run_tool("error_browser.py", "--data", data, "--hyp", f"a={tmp_path / 'nope'}",
                 "--out", out)
    assert p.returncode == 1 and "nope" in p.stderr and not out.exists()


@pytest.mark.slow
def test_run_sh_stage7_writes_and_links_the_pages(tmp_path):
    """run.sh stage 7 alone, on a synthetic experiment (decodes of base and three stages)."""
    from test_results import make_exp

    data, exp = make_exp(tmp_path)
    exp = exp.rename(tmp_path / "decodes")
    mexp = tmp_path / "exp" / "paraformer"
    mexp.parent.mkdir()
    exp.rename(mexp)
    shutil.copytree(data / "general_test", data / "general_train")
    (mexp / "logs").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "train_stage1.log", mexp / "logs" / "train_stage1.log")
    p = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "7", "--stop-stage", "7",
                        "--datadir", str(data), "--expdir", str(tmp_path / "exp"),
                        "--terms", str(tmp_path / "terms.txt")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    md = (mexp / "RESULTS.md").read_text(encoding="utf-8")
    for s in ("general_test", "domain_test"):
        page = (mexp / "error_browser" / f"{s}.html").read_text(encoding="utf-8")
        assert page.count('<tr class="utt"') == 40
        assert 'data-system="base"' in page and 'data-system="stage3"' in page
        assert f"- [{s}](error_browser/{s}.html)" in md


def test_no_chromium_skips_here_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed; CI must"):
        need_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        need_chromium()
