"""The simulator process: one aiohttp app serving a :class:`~openbell.sim.simulator.Simulator`'s REST
endpoints and both streams, and running its market-time loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from openbell.sim import rest
from openbell.sim.simulator import Simulator


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[rest.middleware], client_max_size=1024 * 1024)
    app[rest.SIM] = sim
    rest.routes(app, sim.data_hub.handle, sim.trade_hub.handle)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(sim.run_minutes())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sim.close()

    async def close_streams(app: web.Application) -> None:
        sim.data_hub.drop_all(0)
        sim.trade_hub.drop_all()
        await asyncio.sleep(0.05)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_streams)
    return app


async def serve(sim: Simulator, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT."""
    app = build_app(sim)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
