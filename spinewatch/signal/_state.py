"""Streaming state as one float64 vector: copied out to save, assigned back to resume."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class StateVector:
    """Mixin for streaming kernels whose whole state is ``self._state`` (float64, fixed length).

    Subclasses set ``STATE_LEN`` and fill ``self._state`` in ``__init__``.
    """

    STATE_LEN: int
    _state: npt.NDArray[np.float64]

    @property
    def state(self) -> npt.NDArray[np.float64]:
        """A copy of the state vector; assign it back (to this or a new instance) to resume."""
        return self._state.copy()

    @state.setter
    def state(self, value: npt.ArrayLike) -> None:
        v = np.asarray(value, dtype=np.float64)
        if v.shape != (self.STATE_LEN,):
            raise ValueError(f"state must have shape ({self.STATE_LEN},), got {v.shape}")
        self._state = v.copy()
