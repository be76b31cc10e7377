"""Saving and restoring state that lives in named numpy arrays (quotes, bars), so an edge
server can start from the state the feed process last published to the broker."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

Arrays = dict[str, npt.NDArray[Any]]


class ArrayState:
    """Mixin: ``STATE_FIELDS`` names the attributes that hold the whole state."""

    STATE_FIELDS: ClassVar[tuple[str, ...]]

    def arrays(self) -> Arrays:
        return {name: getattr(self, name) for name in self.STATE_FIELDS}

    def load(self, arrays: Arrays) -> None:
        """Replace the state; arrays of another shape or type (a feed with other symbols or
        capacities) are refused before anything changes."""
        for name in self.STATE_FIELDS:
            held, new = getattr(self, name), arrays.get(name)
            if new is None or new.shape != held.shape or new.dtype != held.dtype:
                raise ValueError(f"state field {name!r} does not fit this server")
        for name in self.STATE_FIELDS:
            setattr(self, name, np.array(arrays[name]))
