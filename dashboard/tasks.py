"""Small asyncio helpers shared by the command line and the worker supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def first(main: Coroutine[Any, Any, Any], other: Coroutine[Any, Any, Any]) -> bool:
    """Run both until one ends and cancel the other; True when ``main`` ended first (its
    exception, if any, is raised). For starting up while a signal may ask to stop."""
    tasks = [asyncio.ensure_future(main), asyncio.ensure_future(other)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if tasks[0] in done:
        tasks[0].result()
        return True
    return False
