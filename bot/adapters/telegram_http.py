"""python-telegram-bot's HTTP requests over aiohttp instead of its default, httpx.

Measured under `chatbot bench serve`: httpx with httpcore spent most of the bot's event-loop time
on each request's bookkeeping (httpcore checks every pooled connection's liveness through
anyio on each request), more than the adapter and the service together. aiohttp is already
installed for discord.py and the metrics endpoint. `BaseRequest` is the library's documented
place for another HTTP backend; its base class still does the Bot API's status and error handling.
"""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp
from telegram._utils.defaultvalue import DefaultValue  # the library's own "left unset" marker,
from telegram._utils.types import ODVInput  # which its own HTTPXRequest checks the same way
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# A request that is neither a long poll nor an upload; the long poll passes its own read timeout.
DEFAULT_TIMEOUT_S = 5.0
UPLOAD_TIMEOUT_S = 20.0


class AiohttpRequest(BaseRequest):
    __slots__ = ("_pool_size", "_session")

    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return DEFAULT_TIMEOUT_S

    async def initialize(self) -> None:
        # Created here, not in __init__: the session belongs to the loop that runs the bot.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._pool_size))

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        uploads = request_data is not None and request_data.contains_files
        # aiohttp has no separate write timeout: a slow upload is bounded by the socket read
        # timeout of its answer, which uploads get more of.
        timeout = aiohttp.ClientTimeout(
            connect=_given(pool_timeout, DEFAULT_TIMEOUT_S),  # waiting for a pooled connection
            sock_connect=_given(connect_timeout, DEFAULT_TIMEOUT_S),
            sock_read=_given(read_timeout, UPLOAD_TIMEOUT_S if uploads else DEFAULT_TIMEOUT_S))
        try:
            body, content_type = _body(request_data)
            headers = {"User-Agent": self.USER_AGENT}
            if content_type:
                headers["Content-Type"] = content_type
            async with self._session.request(method, url, data=body, timeout=timeout,
                                             headers=headers) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut(f"Timed out: {error}") from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error


def _given(value: ODVInput[float], default: float) -> float | None:
    """A timeout PTB passed (None meaning none at all), or ours when it left it unset."""
    return default if isinstance(value, DefaultValue) else value


def _body(request_data: RequestData | None) -> tuple[aiohttp.FormData | bytes | None, str | None]:
    """The body and its content type: form-encoded parameters (the values JSON, as the Bot API
    takes them), multipart with files. A form without files is encoded here: aiohttp's FormData
    took 41 µs a sendMessage to build and write, urlencode 11 µs."""
    if request_data is None:
        return None, None
    if not request_data.contains_files:
        return urlencode(request_data.json_parameters).encode(), "application/x-www-form-urlencoded"
    form = aiohttp.FormData(request_data.json_parameters)
    for name, (filename, content, mime_type) in (request_data.multipart_data or {}).items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form, None  # aiohttp sets the multipart type with its boundary

