"""Functions of a later stage that an earlier stage calls, set from above (the package
root, or the user), so that no stage imports a later one."""

from __future__ import annotations

from typing import Any, Callable

#: the sampling report's default frame reader (:func:`vidloader.sampling.set_default_frame_reader`)
frame_reader: Callable[..., Any] | None = None
