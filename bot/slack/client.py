"""The one Slack Web API client: slack_sdk's ``AsyncWebClient`` with retry handlers.

Every Web API call the bot, the scheduler and the tools make goes through a client built
here, so rate limits (429 with ``Retry-After``), Slack's 5xx and dropped connections are
handled the same way everywhere:

- 429: wait for ``Retry-After`` (plus a little jitter) and try again. A ``Retry-After``
  longer than ``max_retry_after`` is not waited out: the call fails at once with the
  ``ratelimited`` error, because a reply that arrives minutes late is worse than a clear
  "Slack is busy" message. Calls made inside :func:`no_rate_limit_wait` never wait: a
  cosmetic call (the ⏳ reaction) must not delay the answer it decorates.
- 500, 502, 503, 504: exponential backoff with jitter.
- Connection refused / reset / closed by the server: exponential backoff with jitter.

Calls made inside :func:`acted_on_retries_only` are retried only where Slack surely did not
act on them (a 429, a 503, a connection that never opened). A 500/502/504, a connection
closed after the request went out, or a timeout is raised instead: a ``chat.postMessage``
made again blindly there may post the answer twice, so its caller checks first whether it
was posted (``bot.delivery``).

All handlers share one attempt counter per call, so ``max_retries`` bounds the retries of a
call whatever mixture of failures it meets. Rate limits may get a larger budget of their
own (``rate_limit_retries``): a worker, off the ack path, waits out a 429 storm instead of
turning a finished answer into an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from skills import tracing

log = logging.getLogger(f"switchboard.{__name__}")

DEFAULT_BASE_URL = "https://slack.com/api/"
RETRIED_SERVER_STATUSES = frozenset({500, 502, 503, 504})


class JitteredBackoff(RetryIntervalCalculator):
    """``factor * 2**attempt`` seconds plus up to 50 % jitter, never more than ``cap``.

    slack_sdk's default adds up to a whole second of jitter whatever the factor, which makes
    short backoffs (and the tests that use them) slow for no benefit.
    """

    def __init__(self, *, factor: float = 0.5, cap: float = 8.0) -> None:
        self.factor = factor
        self.cap = cap

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        base = self.factor * (2**current_attempt)
        return float(min(self.cap, base * (1 + random.random() / 2)))


_NO_RATE_LIMIT_WAIT: ContextVar[bool] = ContextVar("switchboard_no_rate_limit_wait", default=False)


@contextlib.contextmanager
def no_rate_limit_wait() -> Iterator[None]:
    """Web API calls made inside fail at once on a 429 (``ratelimited``) instead of
    waiting out its ``Retry-After``; server and connection errors still retry."""
    token = _NO_RATE_LIMIT_WAIT.set(True)
    try:
        yield
    finally:
        _NO_RATE_LIMIT_WAIT.reset(token)


#: Failures of a request that never reached Slack (the connection did not open).
NEVER_SENT: tuple[type[Exception], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)

_ACTED_ON_RETRIES_ONLY: ContextVar[bool] = ContextVar(
    "switchboard_acted_on_retries_only", default=False
)


@contextlib.contextmanager
def acted_on_retries_only() -> Iterator[None]:
    """Web API calls made inside are not made again when Slack may have acted on them
    (a 500, 502 or 504; a connection closed after the request was sent; a timeout): the
    error is raised to the caller. 429s, 503s and connections never opened still retry."""
    token = _ACTED_ON_RETRIES_ONLY.set(True)
    try:
        yield
    finally:
        _ACTED_ON_RETRIES_ONLY.reset(token)


class RateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 after ``Retry-After`` seconds, unless Slack asks for too long a wait."""

    def __init__(self, *, max_retry_count: int, max_retry_after: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_retry_after = max_retry_after

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429 or _NO_RATE_LIMIT_WAIT.get():
            return False
        wait = _retry_after(response)
        if wait > self.max_retry_after:
            log.warning(
                "slack rate limited; Retry-After too long, giving up",
                extra={"url": request.url, "retry_after": wait, "cap": self.max_retry_after},
            )
            return False
        return True

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # _can_retry_async only accepts responses; keep the contract
            raise error or RuntimeError("rate-limit retry without a response")
        state.next_attempt_requested = True
        wait = _retry_after(response)
        # A little jitter so replicas that were limited together do not return together.
        duration = wait + random.uniform(0, min(1.0, 0.1 + wait * 0.1))
        log.warning(
            "slack rate limited; waiting before retry",
            extra={
                "url": request.url,
                "retry_after": wait,
                "attempt": state.current_attempt + 1,
                "wait": round(duration, 3),
            },
        )
        await asyncio.sleep(duration)
        state.increment_current_attempt()


class ServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """Retries Slack's 500, 502, 503 and 504 (slack_sdk's own handler only knows 500/503)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code not in RETRIED_SERVER_STATUSES:
            return False
        if _ACTED_ON_RETRIES_ONLY.get() and response.status_code != 503:
            return False
        log.warning(
            "slack server error; retrying",
            extra={
                "url": request.url,
                "status": response.status_code,
                "attempt": state.current_attempt + 1,
            },
        )
        return True


class ConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Retries connections refused, reset or closed before the response (aiohttp errors)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        retry = bool(
            await super()._can_retry_async(
                state=state, request=request, response=response, error=error
            )
        )
        if _ACTED_ON_RETRIES_ONLY.get() and not isinstance(error, NEVER_SENT):
            retry = False  # the request may have reached Slack
        if retry:
            log.warning(
                "slack connection error; retrying",
                extra={
                    "url": request.url,
                    "error": type(error).__name__,
                    "attempt": state.current_attempt + 1,
                },
            )
        return retry


def _header_seconds(headers: Mapping[str, Any]) -> float | None:
    """The ``Retry-After`` header as a number (Slack sends whole seconds); None when absent
    or unreadable. Header values may come as lists (slack_sdk's retry responses)."""
    for name, values in headers.items():
        if str(name).lower() == "retry-after":
            raw = values[0] if isinstance(values, list) else values
            try:
                return float(raw)
            except (TypeError, ValueError):
                return None
    return None


def _retry_after(response: HttpResponse) -> float:
    """``Retry-After`` in seconds; 1 when absent or unreadable."""
    seconds = _header_seconds(response.headers)
    return 1.0 if seconds is None else max(0.0, seconds)


def retry_after(exc: SlackApiError) -> float | None:
    """The ``Retry-After`` seconds of a call that failed with a 429 (1 when absent or
    unreadable, at most an hour: a proxy's garbled header must not park work for days);
    None for any other error."""
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    seconds = _header_seconds(getattr(response, "headers", None) or {})
    if seconds is None or not math.isfinite(seconds):
        return 1.0
    return min(max(0.0, seconds), 3600.0)


def retry_handlers(
    *,
    max_retries: int = 3,
    backoff: float = 0.5,
    max_retry_after: float = 30.0,
    rate_limit_retries: int | None = None,
) -> list[AsyncRetryHandler]:
    """The handlers every client gets: rate limits, server errors, connection errors.
    ``rate_limit_retries`` (default ``max_retries``) bounds the attempts a call may spend
    on 429s; the others stop at ``max_retries``."""
    interval = JitteredBackoff(factor=backoff)
    limited = max_retries if rate_limit_retries is None else max(rate_limit_retries, 0)
    return [
        RateLimitRetryHandler(max_retry_count=limited, max_retry_after=max_retry_after),
        ServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        ConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
    ]


class _TracedWebClient(AsyncWebClient):
    """``AsyncWebClient`` whose every call is a ``slack <method>`` span when tracing is on
    (``skills.tracing``): the Slack post closes a turn's trace."""

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:
        with tracing.slack_call_span(api_method):
            return await super().api_call(api_method, **kwargs)


def create_web_client(
    *,
    token: str,
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 10,
    max_retries: int = 3,
    backoff: float = 0.5,
    max_retry_after: float = 30.0,
    rate_limit_retries: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """Build the Web API client: ``token`` (``xoxb-…``), ``base_url`` (``SLACK_API_URL``).

    Pass a long-lived ``session`` to reuse connections (the caller closes it); without one
    slack_sdk opens a connection per call.

    ``timeout`` is per HTTP attempt; ``max_retries`` bounds the retries of one call across
    all failure kinds; ``backoff`` is the first backoff step for 5xx and connection errors;
    a 429 whose ``Retry-After`` exceeds ``max_retry_after`` seconds fails without waiting;
    ``rate_limit_retries`` (default: ``max_retries``) is how many 429s a call waits out.
    A call that still fails raises ``slack_sdk.errors.SlackApiError`` (HTTP answers) or the
    aiohttp error (no answer).
    """
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    if not base_url.endswith("/"):
        base_url += "/"
    return _TracedWebClient(
        token=token,
        base_url=base_url,
        # aiohttp takes float seconds; slack_sdk's `int` hint is narrower than what it does.
        timeout=timeout,  # type: ignore[arg-type]
        logger=logging.getLogger("slack_sdk.web.async_client"),
        retry_handlers=retry_handlers(
            max_retries=max_retries,
            backoff=backoff,
            max_retry_after=max_retry_after,
            rate_limit_retries=rate_limit_retries,
        ),
        session=session,
    )
