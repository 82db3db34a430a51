"""The model registry: every family's declaration (:class:`~shared.models.spec.Family`), collected.

Families are found by listing :mod:`shared.models.families` (no list kept by hand, so a new
family is one new file) and imported only when asked: loading one saved model imports only its
family. :func:`registered` adds a family for the length of a ``with`` block (tests).
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator

from shared.models import families as families_package
from shared.models.spec import Family, ModelSpec

#: Families registered in this process besides the package's modules (see :func:`registered`).
_EXTRA: dict[str, Family] = {}


def family_modules() -> tuple[str, ...]:
    """Names of the family modules of :mod:`shared.models.families`, sorted (nothing imported)."""
    return tuple(sorted(info.name for info in pkgutil.iter_modules(families_package.__path__)
                        if not info.name.startswith("_")))


def family(name: str) -> Family:
    """The family ``name`` (imported now if needed, or :func:`registered`). :class:`KeyError` for
    any other name: nothing is imported from a name that is not one of the package's modules."""
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in family_modules():
        raise KeyError(f"no model family {name!r}; known: {', '.join(family_modules())}")
    module = importlib.import_module(f"{families_package.__name__}.{name}")
    declared = getattr(module, "FAMILY", None)
    if not isinstance(declared, Family) or declared.name != name:
        raise TypeError(f"{module.__name__} must export FAMILY = Family(name={name!r}, ...)")
    return declared


def families() -> tuple[Family, ...]:
    """Every family: the package's modules (all imported) and the ones :func:`registered`."""
    return tuple(family(name) for name in family_modules()) + tuple(_EXTRA.values())


def specs(**where) -> tuple[ModelSpec, ...]:
    """Every model, in training order, keeping those whose attributes equal ``where``
    (e.g. ``specs(deliverable="deliverable1", role="tabular")``)."""
    every = [spec for fam in families() for spec in fam.models]
    unknown = set(where) - set(ModelSpec.__dataclass_fields__)
    if unknown:
        raise TypeError(f"ModelSpec has no field(s) {sorted(unknown)}")
    return tuple(spec for spec in training_order(every)
                 if all(getattr(spec, key) == value for key, value in where.items()))


def names(**where) -> tuple[str, ...]:
    """The names of :func:`specs` ``(**where)``, in training order."""
    return tuple(spec.name for spec in specs(**where))


def spec(name: str) -> ModelSpec:
    """The model called ``name``."""
    for fam in families():
        for model in fam.models:
            if model.name == name:
                return model
    raise KeyError(f"no model {name!r}; known: {', '.join(names())}")


def family_of(model: str) -> Family:
    """The family declaring the model called ``model``."""
    for fam in families():
        if any(m.name == model for m in fam.models):
            return fam
    raise KeyError(f"no model {model!r}; known: {', '.join(names())}")


def training_order(models: list[ModelSpec]) -> list[ModelSpec]:
    """``models`` sorted by deliverable, then by their declared ``order``; ValueError when a model
    would come before one it needs (``after``)."""
    ordered = sorted(models, key=lambda m: (m.deliverable, m.order, m.name))
    rank = {m.name: i for i, m in enumerate(ordered)}
    for m in ordered:
        late = [n for n in m.after if rank.get(n, -1) > rank[m.name]]
        if late:
            raise ValueError(f"{m.name} needs {late} but is declared to train before them")
    return ordered


@contextlib.contextmanager
def registered(extra: Family) -> Iterator[Family]:
    """Register ``extra`` for the duration of the block; its names must not clash with others.<<"""
    clash = {m.name for m in extra.models} & set(names())
    if extra.name in family_modules() or extra.name in _EXTRA or clash:
        raise ValueError(f"family {extra.name!r} clashes with a registered one ({sorted(clash)})")
    _EXTRA[extra.name] = extra
    try:
        yield extra
    finally:
        _EXTRA.pop(extra.name, None)
