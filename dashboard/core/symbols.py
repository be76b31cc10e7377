"""Symbol names ↔ indices, and the subscription sets clients share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from dashboard.errors import BadRequest, UnknownSymbol
from feeds.base import Symbol, Ticks

IndexArray = npt.NDArray[np.int32]

#: Most names a client may list in one request; more is surely a mistake (or an attack).
MAX_LISTED = 10_000


def listed(names: Sequence[str], most: int = 5) -> str:
    """Names for an error message: quoted, cut short, the first few of many."""
    shown = ", ".join(repr(n[:40]) for n in names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


class SymbolTable:
    def __init__(self, names: Sequence[Symbol]) -> None:
        self.names = tuple(names)
        self._index = {name: i for i, name in enumerate(self.names)}
        #: For turning an index column into names with one fancy index.
        self.array = np.array(self.names, dtype=object)

    def __len__(self) -> int:
        return len(self.names)

    def resolve(self, names: Iterable[object]) -> IndexArray:
        """Indices of ``names`` (sorted, distinct); an unknown or non-string name is refused."""
        found: set[int] = set()
        unknown: list[str] = []
        for count, name in enumerate(names):
            if count >= MAX_LISTED:
                raise BadRequest(f"at most {MAX_LISTED} symbols per request")
            if not isinstance(name, str):
                raise BadRequest("symbols must be strings")
            i = self._index.get(name)
            if i is None:
                unknown.append(name)
            else:
                found.add(i)
        if unknown:
            raise UnknownSymbol(f"unknown symbol {listed(unknown)}")
        return np.array(sorted(found), np.int32)

    def known(self, names: Iterable[str]) -> IndexArray:
        """Indices of those of ``names`` this table has (sorted, distinct)."""
        return np.array(sorted({i for n in names if (i := self._index.get(n)) is not None}),
                        np.int32)

    def parse_list(self, raw: str | None) -> IndexArray | None:
        """A ``symbols=A,B`` query value: None (absent or empty) means every symbol."""
        if raw is None or not raw.strip():
            return None
        return self.resolve(s.strip() for s in raw.split(",") if s.strip())


class Selection:
    """One distinct set of subscribed symbols; every client with the same set shares it, so
    a batch is filtered and encoded once per selection, not once per client."""

    __slots__ = ("_mask", "indices", "key")

    def __init__(self, table_size: int, indices: IndexArray | None) -> None:
        self.key: frozenset[int] | None = None if indices is None else frozenset(indices.tolist())
        if indices is None:
            self.indices = np.arange(table_size, dtype=np.int32)
            self._mask: npt.NDArray[np.bool_] | None = None
        else:
            self.indices = indices
            self._mask = np.zeros(table_size, np.bool_)
            self._mask[indices] = True

    def select(self, ticks: Ticks) -> Ticks:
        return ticks if self._mask is None else ticks.take(self._mask[ticks.sym])

    def __contains__(self, sym: int) -> bool:
        return self._mask is None or bool(self._mask[sym])
