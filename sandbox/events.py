"""Signed requests to the bot, shaped as Slack sends them.

:class:`EventSender` builds Events API envelopes (``event_callback``), slash-command forms
and interactivity payloads (``block_actions``, ``view_submission``), signs each with the
app's signing secret (Slack's ``v0`` HMAC-SHA256 over ``v0:timestamp:body``) and POSTs it
to the bot's Request URL. It returns what the bot answered, so the caller can show a slash
command's ack or a modal's ``response_action``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

__all__ = ["Ack", "EventSender", "Inbound", "sign"]

log = logging.getLogger(f"switchboard.{__name__}")


def sign(secret: str, body: str, timestamp: int) -> str:
    """Slack's request signature (``X-Slack-Signature``) of ``body`` at ``timestamp``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request as sent: its kind (``event:app_mention``, ``slash_command``…), the
    payload, and how it was encoded."""

    kind: str
    payload: dict[str, Any]
    content_type: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The bot's HTTP answer to one request."""

    status: int
    body: str

    def json(self) -> dict[str, Any]:
        """The answer as JSON; ``{}`` when it was empty or not JSON (a plain ack)."""
        try:
            value = json.loads(self.body) if self.body.strip() else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class EventSender:
    """Signs and delivers payloads to ``url`` (the bot's ``/slack/events``).

    ``observers`` see every request before it is sent (the recorder uses this).
    """

    def __init__(
        self,
        *,
        url: str,
        signing_secret: str,
        team_id: str,
        app_id: str,
        bot_user_id: str,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        observers: Sequence[Callable[[Inbound], None]] = (),
    ) -> None:
        self.url = url
        self._secret = signing_secret
        self.team_id = team_id
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self._http = http
        self._clock = clock
        self.observers: list[Callable[[Inbound], None]] = list(observers)

    # -- payload builders -----------------------------------------------------------------

    def event_envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        now = int(self._clock())
        return {
            "token": "sandbox-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": {"event_ts": f"{self._clock():.6f}", **event},
            "type": "event_callback",
            "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    # -- delivery ---------------------------------------------------------------------------

    async def event(self, event: dict[str, Any]) -> Ack:
        """Deliver one Events API event (``{"type": "app_mention", …}``)."""
        payload = self.event_envelope(event)
        return await self._send(
            Inbound(f"event:{event['type']}", payload, "application/json"),
            json.dumps(payload),
        )

    async def command(self, form: dict[str, str]) -> Ack:
        """Deliver a slash command (form fields as Slack sends them)."""
        fields = {"token": "sandbox-verification-token", "team_id": self.team_id, **form}
        fields.setdefault("api_app_id", self.app_id)
        return await self._send(
            Inbound("slash_command", fields, "application/x-www-form-urlencoded"),
            urlencode(fields),
        )

    async def interaction(self, payload: dict[str, Any]) -> Ack:
        """Deliver an interactivity payload (``block_actions``, ``view_submission``…)."""
        payload = {
            "token": "sandbox-verification-token",
            "api_app_id": self.app_id,
            "team": {"id": self.team_id, "domain": "sandbox"},
            "is_enterprise_install": False,
            **payload,
        }
        return await self._send(
            Inbound(str(payload["type"]), payload, "application/x-www-form-urlencoded"),
            urlencode({"payload": json.dumps(payload)}),
        )

    async def _send(self, inbound: Inbound, body: str) -> Ack:
        for observer in list(self.observers):
            observer(inbound)
        timestamp = int(self._clock())
        headers = {
            "content-type": inbound.content_type,
            "x-slack-request-timestamp": str(timestamp),
            "x-slack-signature": sign(self._secret, body, timestamp),
        }
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("could not deliver %s to the bot: %s", inbound.kind, type(exc).__name__)
            return Ack(status=0, body="")
        if response.status_code >= 400:
            log.warning("the bot answered %s with HTTP %d", inbound.kind, response.status_code)
        return Ack(status=response.status_code, body=response.text)
