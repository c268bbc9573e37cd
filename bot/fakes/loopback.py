"""Serving a fake platform's aiohttp application on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start app on a free port of 127.0.0.1; returns its runner (to clean up) and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # port 0: the OS picks a free one
    return runner, runner.addresses[0][1]
