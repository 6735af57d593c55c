"""Scripted timelines for ``feedwatch demo``: steps at fixed offsets, played again every cycle.

The demo's fault scenario (``exporter/commands/demo.py``) and its trading-bot scenario
(``exporter/simulator/trading.py``) are both a ``Timeline``: a demo component whose steps each
announce what the viewer should see (``ctx.say``) and then act on a simulator. Offsets count
from the start of the component, so a slow step never shifts the ones after it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, ClassVar, Sequence

# (seconds into each cycle, what the viewer should see, what to do then)
Step = tuple[float, str, Callable[[], object]]


class Timeline:
    """A demo component (``start(ctx)`` / ``stop()``) playing ``steps(ctx)`` every ``cycle`` seconds."""

    name: ClassVar[str]
    cycle: ClassVar[float]

    def __init__(self, ctx: Any) -> None:
        self.task: asyncio.Task[None] | None = None

    def steps(self, ctx: Any) -> Sequence[Step]:
        raise NotImplementedError

    async def start(self, ctx: Any) -> None:
        self.task = asyncio.create_task(self._play(ctx), name="demo-" + self.name.replace(" ", "-"))

    async def _play(self, ctx: Any) -> None:
        steps = self.steps(ctx)
        loop = asyncio.get_running_loop()
        started = loop.time()
        cycle = 0
        while True:
            for at, description, action in steps:
                delay = started + cycle * self.cycle + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                ctx.say(f"demo: {description}")
                action()
            cycle += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
