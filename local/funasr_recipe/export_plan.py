"""What stage 8 exports and decodes, from ``conf/export.yaml``."""

from __future__ import annotations

from .engines import PRECISIONS
from .errors import DataError


def engine_runs(conf: dict, family: str, source: str = "conf/export.yaml") -> list[tuple[str, str]]:
    """``[(engine, precision), ...]`` of a family, in the config's order."""
    fam = conf.get(family) or {}
    engines = fam.get("engines")
    if not isinstance(engines, dict) or not engines:
        raise DataError(f"{source}: {family}.engines: expected a mapping engine -> precisions")
    from .engines import ENGINES

    runs = []
    for engine, precisions in engines.items():
        if engine not in ENGINES:
            raise DataError(f"{source}: {family}.engines: unknown engine {engine!r} "
                            f"(one of {', '.join(sorted(ENGINES))})")
        for p in precisions if isinstance(precisions, list) else [precisions]:
            if p not in PRECISIONS:
                raise DataError(f"{source}: {family}.engines.{engine}: precision {p!r} is not "
                                f"one of {', '.join(PRECISIONS)}")
            runs.append((engine, p))
    return runs


#: layouts stage 8 writes beside the engines' exports without decoding them here
#: (vLLM needs a GPU: bench/gpu_check.sh serves and decodes its layout)
ARTEFACTS = {"nano": ("vllm",), "paraformer": ()}


def artefacts(conf: dict, family: str, source: str = "conf/export.yaml") -> list[str]:
    """The extra layouts of a family (``<family>.artefacts`` in the export config)."""
    names = (conf.get(family) or {}).get("artefacts") or []
    if not isinstance(names, list):
        raise DataError(f"{source}: {family}.artefacts: expected a list, e.g. [vllm]")
    known = ARTEFACTS.get(family, ())
    for name in names:
        if name not in known:
            raise DataError(f"{source}: {family}.artefacts: unknown artefact {name!r} for "
                            f"{family} (known: {', '.join(known) or 'none'})")
    return list(names)


def shell_lines(conf: dict, family: str, source: str = "conf/export.yaml") -> str:
    """``engine precision`` lines for run.sh's loop."""
    return "".join(f"{e} {p}\n" for e, p in engine_runs(conf, family, source))
