"""The registry of model families: kind name -> Family (`model.family`), after CompressAI's model
registry. Building, training, evaluation, export, the CLI and the benchmarks look a kind up here and use
what its Family declares; none of them asks which class a model is.

Adding a model kind is one new module (the model, its frozen config, its Options and its FAMILY) plus
its line in FAMILIES below.
"""

from __future__ import annotations

from typing import Any

from model import con, count, dis, gen, gsvae, sdlgm, search
from model.family import Family, Options, SparseModel

FAMILIES: dict[str, Family[Any]] = {f.kind: f for f in (
    sdlgm.FAMILY,
    gsvae.FAMILY,
    dis.FAMILY,
    gen.FAMILY,
    con.FAMILY,
    count.FAMILY,
    search.FAMILY,
)}


def kinds() -> list[str]:
    return list(FAMILIES)


def family(kind: str) -> Family[Any]:
    """The family of a kind name; a ValueError listing the known kinds otherwise."""
    try:
        return FAMILIES[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(FAMILIES)}") from None


def family_of(model: SparseModel) -> Family[Any]:
    """The family a model was built by."""
    for f in FAMILIES.values():
        if type(model) is f.model:
            return f
    raise ValueError(f"{type(model).__name__} is not the model of a registered kind ({', '.join(FAMILIES)})")


def parse_options(raw: dict[str, Any]) -> Options:
    """A run config's `model:` section validated by its kind's Options (kind sdlgm when none is given)."""
    kind = raw.get("kind", "sdlgm")
    return family(str(kind)).options.model_validate({**raw, "kind": kind})
