"""A static HTML page to browse the errors of one decoded test set.

One self-contained file: no server, no network, no CDN; the style sheet and
the script are inline, so it opens from disk (``file://``) in any browser and
can be mailed or archived with the decode dir.

Every utterance is a table row with its reference and hypothesis aligned
token by token (correct, substituted, deleted and inserted tokens coloured),
its error counts (``data-*`` attributes too), its term errors when a term list
is given, and an audio player: a relative link to the wav (default), the audio
embedded as base64 (``audio="embed"``, for small sets: the page then stands
alone) or none. With two systems (e.g. the base model and the last stage),
both hypotheses are shown side by side and the rows open with the utterances
whose error count changed most, the changed ones first. The rows are sorted and
filtered in the page (by error count, error type, term errors, change, key
text); the state lives in the URL fragment (``page.html#type=del&sort=errors``)
so that a view can be linked.

Scoring is :func:`funasr_recipe.scoring.score` with alignments, exactly what
``local/score.py`` counts: the page's per-utterance and total counts equal
``score.py``'s (``--details``) for the same normalisation.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .atomic import atomic_write
from .errors import DataError
from .tables import read_table
from .scoring import Alignment, ScoreResult, alignment_counts, score
from .stats import TermMatcher, term_report

log = logging.getLogger(__name__)

AUDIO_MODES = ("link", "embed", "none")
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
         ".opus": "audio/ogg", ".m4a": "audio/mp4"}


@dataclass
class System:
    """One decode of the set: its name and its score (with alignments)."""

    name: str
    result: ScoreResult


@dataclass
class UttTerms:
    """Term occurrences of one utterance for one system."""

    ref: int = 0            #: occurrences in the reference
    missed: int = 0         #: reference occurrences not recognised exactly
    false_alarms: int = 0   #: occurrences in the hypothesis that were not said

    @property
    def errors(self) -> int:
        return self.missed + self.false_alarms


def _one(result: ScoreResult, i: int) -> ScoreResult:
    """Utterance ``i`` of ``result`` as a score of its own."""
    return dataclasses.replace(
        result, keys=[result.keys[i]], ref_tokens=[result.ref_tokens[i]],
        hyp_tokens=[result.hyp_tokens[i]], ref_len=result.ref_len[i:i + 1],
        ins=result.ins[i:i + 1], dels=result.dels[i:i + 1], subs=result.subs[i:i + 1],
        missing=result.missing[i:i + 1], extra_hyp_keys=[],
        alignments=[result.alignments[i]] if result.alignments is not None else None)


def utterance_terms(result: ScoreResult, matcher: TermMatcher) -> list[UttTerms]:
    """Per utterance: term occurrences, missed ones and false alarms, as
    :func:`funasr_recipe.stats.term_report` counts them."""
    out = []
    for i in range(result.n_sentences):
        rep = term_report(_one(result, i), matcher)
        out.append(UttTerms(rep.n_ref, rep.n_ref - rep.n_recognised, rep.n_false_alarms))
    return out


def audio_src(wav: str, page_dir: Path, mode: str) -> str | None:
    """The ``src`` of an utterance's audio player, or None (no player).

    ``link``: the path relative to the page, percent-encoded; ``embed``: a
    base64 data URI. A wav.scp entry that is not a file (a Kaldi pipe) gets no
    player.
    """
    if mode == "none":
        return None
    path = Path(wav)
    if not path.is_file():
        return None
    if mode == "embed":
        mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    rel = os.path.relpath(path.resolve(), page_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def check_embed_size(wavs: Sequence[str], max_mb: float) -> int:
    """Total bytes of the audio files; :class:`DataError` above ``max_mb``."""
    total = sum(Path(w).stat().st_size for w in wavs if Path(w).is_file())
    if total > max_mb * 1e6:
        raise DataError(f"embedding the audio would put {total / 1e6:.1f} MB into the page "
                        f"(limit {max_mb:g} MB, --embed-max-mb); link the audio instead "
                        f"(--audio link, the default) or raise the limit")
    return total


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
h1{font-size:1.3em;margin:.2em 0}
.sum{font-family:monospace;white-space:pre;background:#f4f4f4;padding:.5em;margin:.5em 0}
#controls{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ccc;z-index:1}
#controls label{margin-right:1em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em;vertical-align:top;text-align:left}
td.key{font-family:monospace;font-size:.85em;max-width:16em;word-break:break-all}
td.n{font-family:monospace;white-space:nowrap}
audio{display:block;height:2em;max-width:15em;margin-top:.3em}
.ali{line-height:1.1}
.t{display:inline-block;text-align:center;margin:0 1px 3px 0;padding:0 2px;border-radius:3px}
.t span{display:block;min-height:1.2em}
.t .h{border-top:1px dotted #bbb}
.t.C{background:#fff}
.t.S{background:#fde08a}
.t.D{background:#f6a5a5}
.t.I{background:#a9d7f5}
.t.term{box-shadow:inset 0 -3px 0 #7b3fbf}
.better{color:#16801a;font-weight:bold}
.worse{color:#c01818;font-weight:bold}
.legend .t{padding:0 .4em}
tr[hidden]{display:none}
"""

_JS = r"""
(function(){
  var tbody=document.getElementById('rows');
  var rows=Array.prototype.slice.call(tbody.querySelectorAll('tr.utt'));
  var ctl={sort:document.getElementById('sort'),type:document.getElementById('type'),
           sys:document.getElementById('sys'),min:document.getElementById('min'),
           q:document.getElementById('q')};
  function num(r,name){return parseInt(r.getAttribute('data-'+name),10)||0;}
  function key(r){return r.getAttribute('data-key');}
  function keep(r,s,type,min,q){
    var e=num(r,'err-'+s);
    if(e<min)return false;
    if(q&&key(r).indexOf(q)<0&&r.textContent.indexOf(q)<0)return false;
    switch(type){
      case 'errors':return e>0;
      case 'correct':return e===0;
      case 'sub':return num(r,'sub-'+s)>0;
      case 'del':return num(r,'del-'+s)>0;
      case 'ins':return num(r,'ins-'+s)>0;
      case 'term':return num(r,'termerr-'+s)>0;
      case 'missing':return r.getAttribute('data-missing-'+s)==='1';
      case 'better':return num(r,'delta')<0;
      case 'worse':return num(r,'delta')>0;
      case 'changed':return num(r,'delta')!==0;
      case 'same':return num(r,'delta')===0;
    }
    return true;
  }
  function cmp(sort,s){
    return function(a,b){
      var d=0;
      if(sort==='errors')d=num(b,'err-'+s)-num(a,'err-'+s);
      else if(sort==='rate')d=parseFloat(b.getAttribute('data-rate-'+s))-parseFloat(a.getAttribute('data-rate-'+s));
      else if(sort==='terms')d=num(b,'termerr-'+s)-num(a,'termerr-'+s);
      else if(sort==='change')d=Math.abs(num(b,'delta'))-Math.abs(num(a,'delta'))||num(a,'delta')-num(b,'delta');
      else if(sort==='better')d=num(a,'delta')-num(b,'delta');
      else if(sort==='worse')d=num(b,'delta')-num(a,'delta');
      else if(sort==='length')d=num(b,'reflen')-num(a,'reflen');
      return d||num(a,'order')-num(b,'order');
    };
  }
  function apply(write){
    var s=ctl.sys.value,type=ctl.type.value,min=parseInt(ctl.min.value,10)||0,q=ctl.q.value;
    var sorted=rows.slice().sort(cmp(ctl.sort.value,s)),shown=0;
    sorted.forEach(function(r){
      var k=keep(r,s,type,min,q);
      if(k){r.removeAttribute('hidden');shown++;}else{r.setAttribute('hidden','');}
      tbody.appendChild(r);
    });
    document.getElementById('shown').textContent=shown+' of '+rows.length+' utterances shown';
    document.body.setAttribute('data-shown',shown);
    if(write){
      var h='sort='+ctl.sort.value+'&type='+type+'&sys='+s+'&min='+min+(q?'&q='+encodeURIComponent(q):'');
      history.replaceState(null,'','#'+h);
    }
  }
  var state=location.hash.replace(/^#/,'').split('&');
  state.forEach(function(kv){
    var i=kv.indexOf('=');if(i<0)return;
    var k=kv.slice(0,i),v=decodeURIComponent(kv.slice(i+1));
    if(ctl[k])ctl[k].value=v;
  });
  Object.keys(ctl).forEach(function(k){
    ctl[k].addEventListener(k==='q'||k==='min'?'input':'change',function(){apply(true);});
  });
  apply(false);
})();
"""


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _alignment_html(alignment: Alignment, term_pos: set[int]) -> str:
    """Aligned tokens: one inline block per position, reference over hypothesis."""
    out, r = [], 0
    for ref, hyp, op in alignment:
        cls = op + (" term" if op != "I" and r in term_pos else "")
        title = {"C": "correct", "S": "substitution", "D": "deletion", "I": "insertion"}[op]
        out.append(f'<span class="t {cls}" title="{title}"><span class="r">'
                   f'{_esc(ref) if ref is not None else "&nbsp;"}</span><span class="h">'
                   f'{_esc(hyp) if hyp is not None else "&nbsp;"}</span></span>')
        r += op != "I"
    return "".join(out) if out else '<span class="t C"><span class="r">(empty)</span></span>'


def _summary(system: System, terms: list[UttTerms] | None) -> str:
    lines = system.result.summary().rstrip("\n")
    if terms is not None:
        n_ref = sum(t.ref for t in terms)
        missed = sum(t.missed for t in terms)
        fa = sum(t.false_alarms for t in terms)
        lines += (f"\nterm occurrences: {n_ref}, missed {missed}, false alarms {fa}")
    return f'<div class="sum" data-system="{_esc(system.name)}"><b>{_esc(system.name)}</b>\n' \
           f'{_esc(lines)}</div>'


def render(set_name: str, systems: list[System], wavs: dict[str, str], page_dir: Path,
           audio: str = "link", matcher: TermMatcher | None = None,
           source: str = "") -> str:
    """The page's HTML (see module doc). ``systems``: one or two scores of the
    same references, with alignments; ``wavs``: ``{key: audio path}``."""
    if not 1 <= len(systems) <= 2:
        raise ValueError("one or two systems")
    first = systems[0].result
    for s in systems:
        if s.result.alignments is None:
            raise ValueError("score(..., details=True) keeps the alignments the page needs")
        if s.result.keys != first.keys:
            raise ValueError("the systems were not scored on the same references")
    two = len(systems) == 2
    terms = [utterance_terms(s.result, matcher) if matcher else None for s in systems]
    delta = (systems[1].result.errors - first.errors if two
             else np.zeros(first.n_sentences, np.int64))
    n = first.n_sentences
    parts = [
        "<!DOCTYPE html>", '<html lang="zh"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>errors: {_esc(set_name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Errors of {_esc(set_name)}: {n} utterances</h1>",
        f"<p>{_esc(source)}</p>" if source else "",
    ]
    parts += [_summary(s, t) for s, t in zip(systems, terms)]
    if two:
        better, worse = int((delta < 0).sum()), int((delta > 0).sum())
        parts.append(f'<p id="change">{_esc(systems[1].name)} against {_esc(systems[0].name)}: '
                     f'<span class="better">{better} better</span>, '
                     f'<span class="worse">{worse} worse</span>, {n - better - worse} unchanged '
                     f'(errors per utterance).</p>')
    parts.append('<p class="legend"><span class="t C">correct</span> <span class="t S">'
                 'substitution</span> <span class="t D">deletion</span> <span class="t I">'
                 'insertion</span>' + (' <span class="t C term">term token</span>'
                                       if matcher else '') +
                 ' &mdash; reference above, hypothesis below</p>')
    sys_opts = "".join(f'<option value="{i}"{" selected" if i == len(systems) - 1 else ""}>'
                       f'{_esc(s.name)}</option>' for i, s in enumerate(systems))
    sorts = ([("change", "change first (better or worse)"), ("better", "most improved first"),
              ("worse", "most worsened first")] if two else []) + \
        [("errors", "most errors first"), ("rate", "highest error rate first")] + \
        ([("terms", "most term errors first")] if matcher else []) + \
        [("length", "longest first"), ("key", "key")]
    types = [("all", "all"), ("errors", "with errors"), ("correct", "without errors"),
             ("sub", "with substitutions"), ("del", "with deletions"),
             ("ins", "with insertions")] + \
        ([("term", "with term errors")] if matcher else []) + \
        [("missing", "missing from the hypotheses")] + \
        ([("changed", "changed"), ("better", "better"), ("worse", "worse"),
          ("same", "unchanged")] if two else [])

    def select(name, opts):
        return (f'<select id="{name}">' + "".join(f'<option value="{v}">{_esc(t)}</option>'
                                                  for v, t in opts) + "</select>")

    parts.append(
        '<div id="controls">'
        f'<label>sort {select("sort", sorts)}</label>'
        f'<label>show {select("type", types)}</label>'
        f'<label>counts of <select id="sys">{sys_opts}</select></label>'
        '<label>at least <input id="min" type="number" min="0" value="0" style="width:4em">'
        ' errors</label>'
        '<label>text <input id="q" type="search" placeholder="key or token"></label>'
        f'<span id="shown">{n} of {n} utterances shown</span></div>')
    head = ["utterance"] + [f"errors {_esc(s.name)}<br><small>sub/del/ins</small>"
                            for s in systems]
    head += [f"{_esc(s.name)}: reference / hypothesis" for s in systems]
    parts.append('<table id="utts"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                 '</tr></thead><tbody id="rows">')
    # Row order in the file = the default view: changed first (two systems),
    # else most errors first (script re-sorts on request).
    if two:
        order = sorted(range(n), key=lambda i: (-abs(int(delta[i])), int(delta[i]),
                                                first.keys[i].encode("utf-8")))
    else:
        order = sorted(range(n), key=lambda i: (-int(first.errors[i]),
                                                first.keys[i].encode("utf-8")))
    for rank, i in enumerate(order):
        key = first.keys[i]
        attrs = [f'data-key="{_esc(key)}"', f'data-order="{rank}"',
                 f'data-reflen="{int(first.ref_len[i])}"', f'data-delta="{int(delta[i])}"']
        cells_n, cells_a = [], []
        for j, s in enumerate(systems):
            r = s.result
            c = alignment_counts(r.alignments[i])
            err = c["S"] + c["D"] + c["I"]
            rate = 100.0 * err / int(r.ref_len[i]) if r.ref_len[i] else float(err) * 100
            t = terms[j][i] if terms[j] is not None else None
            attrs += [f'data-err-{j}="{err}"', f'data-sub-{j}="{c["S"]}"',
                      f'data-del-{j}="{c["D"]}"', f'data-ins-{j}="{c["I"]}"',
                      f'data-rate-{j}="{rate:.2f}"',
                      f'data-missing-{j}="{int(bool(r.missing[i]))}"',
                      f'data-termerr-{j}="{t.errors if t else 0}"']
            mark = ""
            if two and j == 1 and delta[i]:
                mark = (f' <span class="{"better" if delta[i] < 0 else "worse"}">'
                        f'{int(delta[i]):+d}</span>')
            term_txt = (f"<br><small>terms: {t.ref - t.missed}/{t.ref} right"
                        f"{f', {t.false_alarms} false' if t.false_alarms else ''}</small>"
                        if t and (t.ref or t.false_alarms) else "")
            miss = "<br><small>not in hyp</small>" if r.missing[i] else ""
            cells_n.append(f'<td class="n"><b class="err">{err}</b>{mark}<br>'
                           f'<small>{c["S"]}/{c["D"]}/{c["I"]}</small>{term_txt}{miss}</td>')
            term_pos = set()
            if matcher is not None:
                for a, b, _ in matcher.find(r.ref_tokens[i]):
                    term_pos.update(range(a, b))
            cells_a.append(f'<td class="ali">{_alignment_html(r.alignments[i], term_pos)}</td>')
        src = audio_src(wavs[key], page_dir, audio) if key in wavs else None
        player = f'<audio controls preload="none" src="{_esc(src)}"></audio>' if src else ""
        parts.append(f'<tr class="utt" {" ".join(attrs)}><td class="key">{_esc(key)}{player}'
                     f'</td>{"".join(cells_n)}{"".join(cells_a)}</tr>')
    parts.append(f"</tbody></table><script>{_JS}</script></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def write_browser(out: str | os.PathLike, refs: dict[str, str],
                  hyps: Sequence[tuple[str, dict[str, str]]], wavs: dict[str, str],
                  normalizer: Callable[[str], str] | None, audio: str = "link",
                  terms: Sequence[str] | None = None, set_name: str | None = None,
                  embed_max_mb: float = 20.0, source: str = "") -> list[System]:
    """Score each ``(name, {key: hyp})`` against ``refs`` and write the page
    to ``out`` atomically. Returns the systems' scores."""
    if audio not in AUDIO_MODES:
        raise DataError(f"audio mode '{audio}': choose one of {', '.join(AUDIO_MODES)}")
    if not 1 <= len(hyps) <= 2:
        raise DataError(f"{len(hyps)} hypothesis sets given: the page shows one system or two "
                        f"side by side (e.g. base and the last stage)")
    names = [n for n, _ in hyps]
    if len(set(names)) != len(names):
        raise DataError(f"two systems are both named '{names[0]}'; give NAME=PATH with "
                        f"different names")
    out = Path(out)
    if audio == "embed":
        check_embed_size([wavs[k] for k in refs if k in wavs], embed_max_mb)
    systems = [System(name, score(refs, h, normalizer=normalizer, details=True))
               for name, h in hyps]
    matcher = TermMatcher(terms, normalizer=normalizer) if terms else None
    page = render(set_name or out.stem, systems, wavs, out.parent, audio, matcher, source)
    with atomic_write(out) as f:
        f.write(page)
    return systems


def read_wavs(wav_scp: Path) -> dict[str, str]:
    """``{key: path}`` of a wav.scp (empty when it does not exist)."""
    return read_table(wav_scp) if wav_scp.is_file() else {}
