"""The /healthz and /metrics endpoint, and what the metrics count."""

from __future__ import annotations

import logging

import aiohttp

from bot.metrics import BotMetrics, OpsServer


async def test_endpoint_serves_health_and_prometheus_text() -> None:
    metrics = BotMetrics()
    metrics.messages_seen.labels("telegram").inc(3)
    metrics.batch_size.observe(8)
    metrics.watch_queue(lambda: 5)
    server = OpsServer(metrics, lambda: {"model": "m1"}, port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "model": "m1"}
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                text = await response.text()
    finally:
        await server.stop()
    assert 'chatbot_messages_seen_total{platform="telegram"} 3.0' in text
    assert "chatbot_decode_batch_size_count 1.0" in text
    assert "chatbot_decode_queue_depth 5.0" in text


def test_rate_limit_waits_are_counted_from_the_client_libraries_logs() -> None:
    metrics = BotMetrics()
    metrics.watch_rate_limits()
    try:
        logging.getLogger("discord.http").warning(
            "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds.", "POST", "/x", 1.0)
        logging.getLogger("telegram.ext.AIORateLimiter").info("Rate limit hit. Retrying after %f seconds", 1.0)
        logging.getLogger("discord.http").warning("something else")
    finally:
        metrics.unwatch_rate_limits()
    assert metrics.rate_limit_waits.labels("discord")._value.get() == 1
    assert metrics.rate_limit_waits.labels("telegram")._value.get() == 1
