"""Operational metrics (Prometheus) and the local /healthz and /metrics endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# The client libraries retry rate-limited sends themselves and say so in their logs; these are
# the loggers and message beginnings that mark one wait.
RATE_LIMIT_LOGS = {
    "telegram.ext.AIORateLimiter": ("telegram", "Rate limit hit"),
    "discord.http": ("discord", "We are being rate limited"),
}


@dataclass(frozen=True, slots=True)
class PlatformMetrics:
    """One platform's labelled series, looked up once: `labels()` takes a lock and builds a key
    on every call, which every message would otherwise pay three times."""

    seen: Counter
    answered: Counter
    reply_seconds: Histogram


class BotMetrics:
    """Every figure the bot exports, in its own registry (so tests and several bots don't mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_seen = Counter("chatbot_messages_seen", "Messages the bot saw", ["platform"], registry=r)
        self.messages_answered = Counter("chatbot_messages_answered", "Messages the bot answered",
                                         ["platform"], registry=r)
        self.reply_seconds = Histogram("chatbot_reply_seconds", "From receiving a message to its reply",
                                       ["platform"], registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("chatbot_decode_batch_size", "Prompts decoded together", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.queue_depth = Gauge("chatbot_decode_queue_depth", "Prompts waiting for the model", registry=r)
        self.model = Info("chatbot_model", "The live model", registry=r)
        self.last_retrain = Info("chatbot_last_retrain", "Outcome of the latest retraining", registry=r)
        self.send_failures = Counter("chatbot_send_failures", "Replies the platform refused for good",
                                     ["platform"], registry=r)
        self.rate_limit_waits = Counter("chatbot_rate_limit_waits", "Sends that waited on a rate limit",
                                        ["platform"], registry=r)
        self._log_counter = _RateLimitLogCounter(self.rate_limit_waits)
        self._platforms: dict[str, PlatformMetrics] = {}

    def platform(self, name: str) -> PlatformMetrics:
        found = self._platforms.get(name)
        if found is None:
            found = self._platforms[name] = PlatformMetrics(
                self.messages_seen.labels(name), self.messages_answered.labels(name),
                self.reply_seconds.labels(name))
        return found

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    def watch_rate_limits(self) -> None:
        for name in RATE_LIMIT_LOGS:
            logger = logging.getLogger(name)
            logger.addHandler(self._log_counter)
            # The handler must see INFO records even when the root logger shows only warnings.
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
                logger.propagate = True

    def unwatch_rate_limits(self) -> None:
        for name in RATE_LIMIT_LOGS:
            logging.getLogger(name).removeHandler(self._log_counter)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RateLimitLogCounter(logging.Handler):
    def __init__(self, counter: Counter) -> None:
        super().__init__(level=logging.INFO)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        platform, prefix = RATE_LIMIT_LOGS.get(record.name, ("", None))
        if prefix is not None and str(record.msg).startswith(prefix):
            self.counter.labels(platform).inc()


class OpsServer:
    """/healthz (is the bot up, which model) and /metrics (Prometheus) on a local port."""

    def __init__(self, metrics: BotMetrics, health: Callable[[], dict[str, object]], *,
                 host: str = "127.0.0.1", port: int = 9108) -> None:
        self.metrics = metrics
        self.health = health
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("ops: /healthz and /metrics on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self.health()})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
