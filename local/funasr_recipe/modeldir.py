"""Check that a base model is a complete local directory funasr can use, before funasr sees it.

funasr treats any ``model=`` that is not an existing path as a hub name and
tries to download it (half a minute of retries offline, then a misleading
"not registered" error). This recipe never downloads: the user fetches the
model once and passes its directory. :func:`check_model_dir` turns every way
that can go wrong into one clear message, at once instead of minutes later:

* the directory: a local directory of the right family (a Fun-ASR-Nano dir
  given as Paraformer is named as such), with the files the family needs;
* every class ``config.yaml`` names (model, encoder, adaptor, CTC decoder,
  predictor, frontend, specaug, tokenizers, dataset, index_ds, batch sampler,
  prompt class, preprocessors, optimizer, scheduler) is registered in the
  installed funasr (``funasr.register.tables``), and the LLM's config is one
  transformers knows;
* every file ``config.yaml`` and ``configuration.json`` reference exists:
  ``tokens.json``, ``am.mvn``, ``seg_dict`` (Paraformer's English word
  pieces: without it funasr silently tokenises English letter by letter),
  ``multilingual.tiktoken`` (Fun-ASR-Nano's CTC tokenizer when
  ``vocab_path`` is null: without it funasr fails with a path inside its own
  package), the ``Qwen3-0.6B/`` tokenizer and config.

Problems with a known fix (the released Fun-ASR-Nano config's
``dataset: FunASRNano``, which funasr 1.4.16 does not register) are not
errors: :func:`training_overrides` returns the fixed settings for the config
the recipe trains with, and says what it changed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFamily:
    """What a model directory of one family must hold."""

    name: str
    #: files (or directories) that must all exist
    required: tuple[str, ...]
    #: groups of alternatives: at least one of each group must exist
    one_of: tuple[tuple[str, ...], ...]
    #: the published model the recipe fine-tunes, on ModelScope and Hugging Face
    modelscope_id: str
    huggingface_id: str


FAMILIES: dict[str, ModelFamily] = {
    "paraformer": ModelFamily(
        name="paraformer",
        required=("config.yaml", "model.pt", "am.mvn", "configuration.json"),
        one_of=(("tokens.json", "tokens.txt"),),
        modelscope_id="iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        huggingface_id="funasr/paraformer-zh",
    ),
    "nano": ModelFamily(
        name="nano",
        # The LLM is built from Qwen3-0.6B/config.json and its weights come from
        # model.pt; the tokenizer (HuggingfaceTokenizer) reads the Qwen3 files. The
        # fast tokenizer needs tokenizer.json; vocab.json + merges.txt are its
        # slow-tokenizer equivalent and not required.
        required=("config.yaml", "configuration.json", "model.pt", "Qwen3-0.6B/config.json",
                  "Qwen3-0.6B/tokenizer_config.json", "Qwen3-0.6B/tokenizer.json"),
        one_of=(),
        modelscope_id="FunAudioLLM/Fun-ASR-Nano-2512",
        huggingface_id="FunAudioLLM/Fun-ASR-Nano-2512",
    ),
}


def download_hint(family: ModelFamily, dest: str = "models") -> str:
    """Shell commands that fetch the family's published model into ``dest/``."""
    ms_dir = f"{dest}/{family.modelscope_id.rsplit('/', 1)[-1]}"
    hf_dir = f"{dest}/{family.huggingface_id.rsplit('/', 1)[-1]}"
    return (f"download it once on a machine with internet access, e.g.\n"
            f"    pip install modelscope && modelscope download --model {family.modelscope_id} "
            f"--local_dir {ms_dir}\n"
            f"  or\n"
            f"    pip install -U huggingface_hub && huggingface-cli download {family.huggingface_id} "
            f"--local-dir {hf_dir}\n"
            f"  then pass that directory (copy it here if needed)")


def _existing_dir(path: str | os.PathLike, fam: ModelFamily) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"model '{path}' is not an existing local directory. This recipe does not fetch "
            f"models from a hub (names such as 'paraformer-zh' or '{fam.modelscope_id}' are "
            f"not downloaded); {download_hint(fam)}")
    if not p.is_dir():
        raise DataError(f"model '{path}' is a file, not a model directory; pass the directory "
                        f"that holds {', '.join(fam.required)}")
    return p


def _family_of(config: dict) -> str | None:
    model = str(config.get("model") or "")
    if model == "FunASRNano" or "audio_adaptor" in config and "llm" in config:
        return "nano"
    if "Paraformer" in model:
        return "paraformer"
    return None


FAMILY_TITLES = {"paraformer": "Paraformer", "nano": "Fun-ASR-Nano"}


def load_config(p: Path) -> dict:
    """``config.yaml`` of model dir ``p`` as a mapping (DataError naming the file otherwise)."""
    path = p / "config.yaml"
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(e).split())}); restore the "
                        f"file from the model download") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; restore the file from the model "
                        f"download") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a mapping of config keys (model: ..., "
                        f"encoder: ...), got {type(config).__name__}; restore the file from "
                        f"the model download")
    return config


def load_configuration_json(p: Path) -> dict:
    path = p / "configuration.json"
    try:
        with open(path, encoding="utf-8") as f:
            conf = json.load(f)
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); restore the file from the model "
                        f"download") from None
    if not isinstance(conf, dict):
        raise DataError(f"{path}: expected a JSON object with file_path_metas")
    return conf


def _get(config: dict, dotted: str) -> Any:
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _flatten_metas(metas: Any, prefix: str = "") -> dict[str, str]:
    """configuration.json's ``file_path_metas`` as ``{dotted config key: relative path}``."""
    out: dict[str, str] = {}
    if isinstance(metas, dict):
        for k, v in metas.items():
            key = f"{prefix}{k}"
            if isinstance(v, str):
                out[key] = v
            elif isinstance(v, dict):
                out.update(_flatten_metas(v, key + "."))
            elif isinstance(v, (list, tuple)):
                for item in v:
                    if isinstance(item, str):
                        out[key] = item
    return out


#: dotted config key -> funasr registry table (``tables.<name>``) its value must be in.
#: ``optim``/``scheduler`` are funasr's own dicts (funasr.optimizers / funasr.schedulers).
CLASS_KEYS: tuple[tuple[str, str], ...] = (
    ("model", "model_classes"),
    ("encoder", "encoder_classes"),
    ("audio_encoder", "encoder_classes"),
    ("decoder", "decoder_classes"),
    ("predictor", "predictor_classes"),
    ("frontend", "frontend_classes"),
    ("specaug", "specaug_classes"),
    ("normalize", "normalize_classes"),
    ("tokenizer", "tokenizer_classes"),
    ("audio_adaptor", "adaptor_classes"),
    ("ctc_decoder", "adaptor_classes"),        # FunASRNano looks its CTC decoder up there
    ("ctc_tokenizer", "tokenizer_classes"),
    ("dataset_conf.ctc_tokenizer", "tokenizer_classes"),
    ("dataset", "dataset_classes"),
    ("dataset_conf.index_ds", "index_ds_classes"),
    ("dataset_conf.batch_sampler", "batch_sampler_classes"),
    ("dataset_conf.prompt_classes", "prompt_classes"),
    ("dataset_conf.preprocessor_text", "preprocessor_classes"),
    ("dataset_conf.preprocessor_speech", "preprocessor_classes"),
    ("dataset_conf.preprocessor_noise", "preprocessor_classes"),
    ("optim", "optim"),
    ("scheduler", "scheduler"),
)

#: Unregistered names with a known replacement: (key, value) -> (new value, why).
KNOWN_FIXES: dict[tuple[str, str], tuple[Any, str]] = {
    ("dataset", "FunASRNano"): (
        "FunASR", "funasr 1.4.16 registers Fun-ASR-Nano's dataset as FunASR (the other copy "
                  "of the released config names it so)"),
    ("dataset_conf.index_ds", "FunASRNano"): (
        "FunASR", "funasr 1.4.16 registers Fun-ASR-Nano's index as FunASR"),
}

#: Keys a dataset class never reads: an unregistered value there is dropped, not an error.
UNREAD_BY_DATASET: dict[str, tuple[str, ...]] = {
    "FunASR": ("dataset_conf.preprocessor_text",),
}


def _registry(table: str) -> dict:
    if table == "optim":
        from funasr.optimizers import optim_classes
        return optim_classes
    if table == "scheduler":
        from funasr.schedulers import scheduler_classes
        return scheduler_classes
    import funasr  # noqa: F401  (importing funasr registers every class)
    from funasr.register import tables
    return getattr(tables, table, None) or {}


def _funasr_version() -> str:
    try:
        from importlib.metadata import version
        return f"funasr {version('funasr')}"
    except Exception:
        return "the installed funasr"


@dataclass
class ModelDir:
    """A checked model directory."""

    path: Path
    family: str
    config: dict
    #: dotted key -> value to train with instead of the released one (known fixes)
    fixes: dict[str, Any] = field(default_factory=dict)
    #: one line per fix: what changed and why
    notes: list[str] = field(default_factory=list)


def _check_classes(cfg_path: Path, config: dict, md: ModelDir) -> list[str]:
    problems = []
    fixed = dict(config)
    for key, table in CLASS_KEYS:
        value = _get(config, key)
        if value is None or value == "":
            continue
        if key == "audio_encoder" and _get(config, "audio_encoder_conf.hub") == "ms":
            continue        # built by AutoModel from a hub name, not from the registry
        registry = _registry(table)
        if isinstance(value, str) and value in registry:
            continue
        fix = KNOWN_FIXES.get((key, value)) if isinstance(value, str) else None
        if fix is not None:
            md.fixes[key] = fix[0]
            md.notes.append(f"{key}: {value} -> {fix[0]} ({fix[1]})")
            if key == "dataset":
                fixed["dataset"] = fix[0]
            continue
        dataset = md.fixes.get("dataset", config.get("dataset"))
        if key in UNREAD_BY_DATASET.get(str(dataset), ()):
            md.fixes[key] = None
            md.notes.append(f"{key}: {value} -> null ({value} is not registered in "
                            f"{_funasr_version()}, and its {dataset} dataset never reads "
                            f"this key)")
            continue
        accepted = ", ".join(sorted(registry)) or "(none registered)"
        problems.append(f"{cfg_path}: {key}: '{value}' is not a class {_funasr_version()} "
                        f"knows; accepted: {accepted}")
    return problems


def _check_llm(p: Path, config: dict, md: ModelDir) -> list[str]:
    problems = []
    for key in ("llm_conf.init_param_path", "tokenizer_conf.init_param_path"):
        value = _get(config, key)
        if not isinstance(value, str) or value.startswith("${"):
            continue
        d = Path(value) if os.path.isabs(value) else p / value
        if not (d / "config.json").is_file() and key.startswith("llm"):
            problems.append(f"{p / 'config.yaml'}: {key}: '{value}' needs {d}/config.json "
                            f"(the LLM's Hugging Face config); copy the folder from the model "
                            f"download")
    llm_dir = _get(config, "llm_conf.init_param_path")
    if isinstance(llm_dir, str):
        cj = (Path(llm_dir) if os.path.isabs(llm_dir) else p / llm_dir) / "config.json"
        if cj.is_file():
            try:
                model_type = json.loads(cj.read_text(encoding="utf-8")).get("model_type")
            except ValueError as e:
                return problems + [f"{cj}: not valid JSON ({e})"]
            from transformers import CONFIG_MAPPING
            if model_type not in CONFIG_MAPPING:
                problems.append(f"{cj}: model_type: '{model_type}' is not a model type the "
                                f"installed transformers knows (e.g. qwen3)")
    return problems


def _check_files(p: Path, config: dict, metas: dict[str, str], md: ModelDir) -> list[str]:
    """Every file configuration.json or config.yaml names, and the CTC vocabulary."""
    problems = []
    for key, rel in metas.items():
        if not (p / rel).exists():
            problems.append(f"{p / 'configuration.json'}: file_path_metas {key}: '{rel}' is "
                            f"missing from {p} (funasr would silently go on without it)"
                            + (": English would be tokenised letter by letter instead of into "
                               "the model's @@ word pieces" if "seg_dict" in key else "")
                            + "; copy it from the model download")
    for key in ("tokenizer_conf.seg_dict", "tokenizer_conf.seg_dict_file",
                "tokenizer_conf.token_list", "frontend_conf.cmvn_file"):
        value = _get(config, key)
        if isinstance(value, str) and value and key not in metas:
            f = Path(value) if os.path.isabs(value) else p / value
            if not f.exists():
                problems.append(f"{p / 'config.yaml'}: {key}: '{value}' does not exist; "
                                f"copy it from the model download")
    if config.get("ctc_decoder"):
        tok_key = "ctc_tokenizer_conf" if "ctc_tokenizer_conf" in config \
            else "dataset_conf.ctc_tokenizer_conf"
        vocab = _get(config, f"{tok_key}.vocab_path")
        mapped = any(k.endswith("ctc_tokenizer_conf.vocab_path") for k in metas)
        if vocab in (None, ""):
            f = p / "multilingual.tiktoken"
            if not f.is_file():
                problems.append(
                    f"{p / 'config.yaml'}: ctc_decoder: {config['ctc_decoder']} with "
                    f"{tok_key}.vocab_path: null needs {f} (the CTC tokenizer's vocabulary, "
                    f"907 kB in the release; funasr would look for it inside its own package "
                    f"and fail); copy multilingual.tiktoken from the model download")
            elif not mapped:
                md.fixes["dataset_conf.ctc_tokenizer_conf.vocab_path"] = str(f.resolve())
                md.notes.append(f"dataset_conf.ctc_tokenizer_conf.vocab_path: null -> {f} "
                                f"(configuration.json does not map it; funasr would look "
                                f"inside its own package)")
        elif isinstance(vocab, str):
            f = Path(vocab) if os.path.isabs(vocab) else p / vocab
            if not f.is_file():
                problems.append(f"{p / 'config.yaml'}: {tok_key}.vocab_path: '{vocab}' does "
                                f"not exist; copy it from the model download")
    return problems


def inspect_model_dir(path: str | os.PathLike, family: str, classes: bool = True) -> ModelDir:
    """Check model directory ``path`` of ``family`` (see the module doc) and return it
    with the known fixes to train with. Raises :class:`DataError`: one line naming
    the file, the key, its value and what is accepted (every problem found).

    ``classes=False`` leaves out resolving the config's classes in funasr's
    registry (importing funasr takes seconds): for tools that read only the
    dir's files (the jsonl's tokenizer), after the run's start has checked it whole."""
    if family not in FAMILIES:
        raise DataError(f"unknown model family '{family}'; choose one of: {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    p = _existing_dir(path, fam)
    try:
        config = load_config(p) if (p / "config.yaml").is_file() else None
    except DataError:
        config = None           # reported after the missing files
    if config is not None:
        found = _family_of(config)
        if found is not None and found != family:
            raise DataError(
                f"'{p}' is a {FAMILY_TITLES[found]} model dir (config.yaml: model: "
                f"{config.get('model')}), not {FAMILY_TITLES[family]}: run with --model "
                f"{found}, or pass a {FAMILY_TITLES[family]} model dir")
    missing = [name for name in fam.required if not (p / name).exists()]
    for group in fam.one_of:
        if not any((p / name).exists() for name in group):
            missing.append(" or ".join(group))
    if missing:
        raise DataError(f"model directory '{p}' is incomplete for {family}: missing "
                        f"{', '.join(missing)}. Was the download interrupted? Re-download it; "
                        f"{download_hint(fam)}")
    config = load_config(p)
    md = ModelDir(p.resolve(), family, config)
    metas = _flatten_metas(load_configuration_json(p).get("file_path_metas") or {})
    problems = _check_files(p, config, metas, md)
    if classes:
        problems += _check_classes(p / "config.yaml", config, md)
    problems += _check_llm(p, config, md)
    if problems:
        raise DataError(" | ".join(problems))
    return md


def check_model_dir(path: str | os.PathLike, family: str, classes: bool = True) -> Path:
    """Return the absolute path of a complete local model directory of ``family``.

    Raises :class:`DataError` when ``family`` is unknown, when ``path`` does
    not exist (a hub name such as ``paraformer-zh`` or
    ``FunAudioLLM/Fun-ASR-Nano-2512`` is not fetched by this recipe; the
    message says how to download one), is not a directory, is of the other
    family, lacks required files (all listed), or names a class or file funasr
    cannot find (:func:`inspect_model_dir`; ``classes`` as there).
    """
    return inspect_model_dir(path, family, classes).path


def training_overrides(model_dir: str | os.PathLike, family: str,
                       settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (the train config's ``key: value``) with the model dir's known
    fixes put first (the train config still wins), each announced as a warning."""
    md = inspect_model_dir(model_dir, family)
    for note in md.notes:
        log.warning("%s/config.yaml: trained with %s", md.path, note)
    return {**md.fixes, **settings}


#: What a model dir may hold besides the model funasr decodes: the recipe's
#: provenance (``export.json``, hidden stamps) and a LoRA stage's serving extras
#: (``peft_adapter/``, ``peft_base_llm/``: :mod:`.lora`), which no decode reads.
NOT_DECODED = ("export.json", "peft_adapter", "peft_base_llm")


def same_model(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether model dirs ``a`` and ``b`` hold the same model: the same files
    with the same content (the stamps' fingerprint of a directory,
    :func:`.stamp.input_print`), :data:`NOT_DECODED` aside. A fine-tuning stage
    that passed its input on (``on_over_budget: start``) is such a copy of the
    stage before it, so decoding it again would only repeat that stage's
    hypotheses."""
    from .stamp import input_print

    def decoded(d: Path) -> dict[str, str]:
        if not d.is_dir():
            raise DataError(f"{d}: not a model directory")
        return {rel: fp for rel, fp in input_print(d).items()
                if rel.split("/", 1)[0] not in NOT_DECODED}

    return decoded(Path(a)) == decoded(Path(b))
