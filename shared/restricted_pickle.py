"""The project's one restricted unpickler: pickles from outside may only name allowed globals.

A pickle can name any importable callable (``os.system``, ``builtins.exec`` ...) and call it while
it loads. :class:`RestrictedUnpickler` resolves a global only when it is in the subclass's
``allowed`` mapping ``{(module, name): object}``, and otherwise raises :class:`UnsafePickleError`
*before* anything is called; persistent ids are refused unless a subclass handles them.

Each use declares its own allow-list in a subclass (the numpy object arrays of ``data fetch``
in :mod:`shared.acquisition.safe_pickle`, legacy torch state dicts in
:mod:`shared.backbones.torch_legacy`).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, ClassVar


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the allow-list; nothing was executed."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :attr:`allowed` (empty here: subclass it)."""

    #: ``{(module, name): the object to return}``; the only globals a pickle may reference.
    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(self.refusal(module, name)) from None

    def refusal(self, module: str, name: str) -> str:
        """The error message for a refused global (subclasses say what they accept)."""
        return f"refused to load '{module}.{name}': not in the allow-list, nothing was executed"

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused persistent id {pid!r} in pickle")
