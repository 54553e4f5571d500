"""The Web API over HTTP, as Slack takes it: ``/{method}``, GET query or POST form/JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.workspace.core import Emulator

__all__ = ["parse_call", "routes"]


def parse_call(
    query: Mapping[str, str], *, authorization: str, content_type: str, raw: bytes
) -> tuple[dict[str, Any], str | None] | None:
    """A call's arguments and bot token (``Authorization: Bearer …`` or a ``token``
    argument); None when a JSON body does not parse (``invalid_json``)."""
    args: dict[str, Any] = dict(query)
    kind = content_type.split(";")[0].strip().lower()
    if raw and kind == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        if isinstance(body, dict):
            args.update(body)
    elif raw:
        args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    bearer = authorization.startswith("Bearer ")
    token = authorization.removeprefix("Bearer ").strip() if bearer else None
    token = token or args.pop("token", None)
    args.pop("token", None)
    return args, token


def routes(emulator: Emulator) -> list[Route]:
    """``/{method}`` (mount under ``/api``)."""

    async def web_api(request: Request) -> Response:
        raw = await request.body() if request.method == "POST" else b""
        parsed = parse_call(
            request.query_params,
            authorization=request.headers.get("authorization", ""),
            content_type=request.headers.get("content-type", ""),
            raw=raw,
        )
        if parsed is None:
            return JSONResponse({"ok": False, "error": "invalid_json"})
        args, token = parsed
        status, headers, body = emulator.call(request.path_params["method"], args, token)
        return JSONResponse(body, status_code=status, headers=headers)

    return [Route("/{method:str}", web_api, methods=["GET", "POST"])]
