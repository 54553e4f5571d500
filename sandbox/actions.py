"""What a person does in the sandbox, turned into workspace changes and signed payloads.

Writing a message stores it and delivers the events Slack would (``message`` always,
``app_mention`` too when the bot is mentioned in a channel); a slash command gets a
``response_url`` and its ack is shown to that person only; a click sends ``block_actions``
with a fresh ``trigger_id``; submitting a modal sends ``view_submission`` and honours the
``response_action`` of the ack. Every action is announced to ``observers`` (the recorder).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

from sandbox.events import Ack, EventSender
from sandbox.workspace import Emulator, SlackError

__all__ = ["ActionError", "Actions", "encode_text"]

log = logging.getLogger(f"switchboard.{__name__}")

_HANDLE = re.compile(r"(?<![\w@<])@([A-Za-z0-9][A-Za-z0-9._-]*)")
_CHANNEL = re.compile(r"(?<![\w#<&|])#([a-z0-9][a-z0-9_-]*)")
_SPECIAL = {"here": "<!here>", "channel": "<!channel>", "everyone": "<!everyone>"}


class ActionError(Exception):
    """The action cannot be done (unknown message, button, view…); shown to the person."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def encode_text(text: str, emulator: Emulator) -> str:
    """What a Slack client sends for typed text: ``&<>`` escaped, ``@name`` and ``#channel``
    turned into ``<@U…>``, ``<!subteam^S…>`` and ``<#C…|name>`` when they exist."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    people = {u["name"].lower(): uid for uid, u in emulator.users.items()}
    groups = {g["handle"].lower(): gid for gid, g in emulator.usergroups.items()}
    channels = {c["name"]: cid for cid, c in emulator.channels.items() if not c["is_im"]}

    def mention(match: re.Match[str]) -> str:
        handle = match.group(1).rstrip(".").lower()
        rest = match.group(1)[len(handle) :]
        if handle in people:
            return f"<@{people[handle]}>{rest}"
        if handle in groups:
            return f"<!subteam^{groups[handle]}|@{handle}>{rest}"
        if handle in _SPECIAL:
            return _SPECIAL[handle] + rest
        return match.group(0)

    def channel(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"<#{channels[name]}|{name}>" if name in channels else match.group(0)

    return _CHANNEL.sub(channel, _HANDLE.sub(mention, escaped))


class Actions:
    """The sandbox's people acting on the workspace.

    ``hooks_url`` is the base of ``response_url`` values (``http://…/hooks/``); ``idle``
    waits until the bot has finished its background work (:meth:`settle`).
    """

    def __init__(
        self,
        *,
        emulator: Emulator,
        sender: EventSender,
        hooks_url: str,
        idle: Callable[[], Awaitable[None]] | None = None,
        observers: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        self.emulator = emulator
        self.sender = sender
        self.hooks_url = hooks_url if hooks_url.endswith("/") else hooks_url + "/"
        self._idle = idle
        self._tasks: set[asyncio.Task[Any]] = set()
        self.observers: list[Callable[[dict[str, Any]], None]] = list(observers)

    # -- messages ---------------------------------------------------------------------------

    async def say(
        self, *, user: str, channel: str, text: str, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """Post ``text`` as ``user`` and deliver its events (in the background)."""
        emulator = self.emulator
        if not text.strip():
            raise ActionError("write something first")
        encoded = encode_text(text, emulator)
        try:
            message = emulator.add_message(channel, encoded, user=user, thread_ts=thread_ts)
        except SlackError as exc:
            raise ActionError(_explain(exc.error)) from None
        self._announce(
            {"do": "say", "user": user, "channel": channel, "text": text, "thread_ts": thread_ts},
            created=message["ts"],
        )
        found = emulator.channels[channel]
        if emulator.bot_user_id not in found["members"]:
            return message
        channel_type = _channel_type(found)
        event: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": encoded,
            "ts": message["ts"],
            "channel": channel,
            "channel_type": channel_type,
            "team": emulator.team_id,
        }
        if message.get("thread_ts"):
            event["thread_ts"] = message["thread_ts"]
        events = [event]
        if channel_type != "im" and f"<@{emulator.bot_user_id}>" in encoded:
            mention = {k: v for k, v in event.items() if k != "channel_type"}
            events.append({**mention, "type": "app_mention"})
        self._spawn(self._deliver(events))
        return message

    async def _deliver(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.sender.event(event)

    async def command(self, *, user: str, channel: str, text: str) -> Ack:
        """Run ``/switchboard text`` as ``user`` in ``channel``; the ack is shown to them."""
        emulator = self.emulator
        if channel not in emulator.channels:
            raise ActionError("unknown channel")
        command, _, rest = text.strip().partition(" ")
        if not command.startswith("/"):
            raise ActionError("a slash command starts with /")
        if command != "/switchboard":
            emulator.show_ephemeral(
                channel=channel,
                user=user,
                text=f"`{command}` is not a valid command. In the sandbox, try `/switchboard`.",
            )
            return Ack(status=404, body="")
        self._announce({"do": "command", "user": user, "channel": channel, "text": text})
        found = emulator.channels[channel]
        token = emulator.new_response_url_token(user=user, channel=channel)
        form = {
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": "directmessage" if found["is_im"] else found["name"],
            "user_id": user,
            "user_name": emulator.users[user]["name"],
            "command": command,
            "text": encode_text(rest.strip(), emulator),
            "response_url": self.hooks_url + token,
            "trigger_id": emulator.new_trigger(user),
            "is_enterprise_install": "false",
        }
        ack = await self.sender.command(form)
        self._show_ack(ack, user=user, channel=channel, what=command)
        return ack

    def _show_ack(self, ack: Ack, *, user: str, channel: str, what: str) -> None:
        emulator = self.emulator
        if ack.status != 200:
            reason = "dispatch_failed" if ack.status == 0 else f"http_error_{ack.status}"
            emulator.show_ephemeral(
                channel=channel, user=user, text=f"{what} failed with the error “{reason}”"
            )
            return
        body = ack.json()
        text = str(body.get("text") or "")
        blocks = body.get("blocks")
        if not body and ack.body.strip():
            text = ack.body.strip()
        if not text and not blocks:
            return
        if body.get("response_type") == "in_channel":
            emulator.call(
                "chat.postMessage",
                {"channel": channel, "text": text, **({"blocks": blocks} if blocks else {})},
                emulator.token,
            )
        else:
            emulator.show_ephemeral(
                channel=channel,
                user=user,
                text=text,
                blocks=blocks if isinstance(blocks, list) else None,
            )

    # -- interactivity ----------------------------------------------------------------------

    async def click(
        self,
        *,
        user: str,
        action_id: str,
        block_id: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        selected: str | None = None,
        state: dict[str, dict[str, Any]] | None = None,
    ) -> Ack:
        """Click a button (or pick an option) in a message, App Home or a modal."""
        emulator = self.emulator
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user),
            "trigger_id": emulator.new_trigger(user),
        }
        if view_id is not None:
            view = emulator.views.get(view_id)
            if view is None:
                raise ActionError("that view is gone")
            blocks = view.get("blocks") or []
            payload["container"] = {"type": "view", "view_id": view_id}
            payload["view"] = {
                **view,
                "state": {"values": _state_values(blocks, state or {})},
            }
        elif channel is not None and message_ts is not None:
            message = emulator.find_message(channel, message_ts)
            if message is None:
                raise ActionError("that message is gone")
            blocks = message.get("blocks") or []
            ephemeral = message.get("subtype") == "ephemeral"
            container: dict[str, Any] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            }
            if message.get("thread_ts"):
                container["thread_ts"] = message["thread_ts"]
            found = emulator.channels[channel]
            payload["container"] = container
            payload["channel"] = {"id": channel, "name": found["name"]}
            if not ephemeral:
                payload["message"] = message
            payload["state"] = {"values": _state_values(blocks, state or {})}
            token = emulator.new_response_url_token(
                user=user, channel=channel, message_ts=message_ts, ephemeral=ephemeral
            )
            payload["response_url"] = self.hooks_url + token
        else:
            raise ActionError("a click needs a message or a view")
        element, found_block = _element(blocks, action_id, block_id)
        if element is None:
            raise ActionError(f"no element {action_id!r} there")
        payload["actions"] = [_action(element, found_block, selected, emulator)]
        self._announce(
            {
                "do": "click",
                "user": user,
                "action_id": action_id,
                "block_id": found_block,
                "channel": channel,
                "message_ts": message_ts,
                "view_id": view_id,
                "selected": selected,
                "state": state,
            }
        )
        return await self.sender.interaction(payload)

    async def submit(
        self, *, user: str, view_id: str, values: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """Submit an open modal with ``values`` (``{block_id: {action_id: value}}``).

        Returns ``{"closed": bool, "errors": {block_id: message}}``.
        """
        emulator = self.emulator
        view = emulator.views.get(view_id)
        if view is None or view.get("type") != "modal":
            raise ActionError("that modal is gone")
        self._announce({"do": "submit", "user": user, "view_id": view_id, "values": values})
        payload = {
            "type": "view_submission",
            "user": self._user(user),
            "trigger_id": emulator.new_trigger(user),
            "view": {**view, "state": {"values": _state_values(view["blocks"], values)}},
            "response_urls": [],
        }
        ack = await self.sender.interaction(payload)
        if ack.status != 200:
            return {"closed": False, "errors": {"": "The app did not answer. Try again."}}
        body = ack.json()
        action = body.get("response_action")
        if action == "errors":
            errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
            return {"closed": False, "errors": errors}
        if action in ("update", "push") and isinstance(body.get("view"), dict):
            try:
                emulator.replace_modal(user, view_id, body["view"])
            except SlackError as exc:
                log.warning("modal %s answer refused: %s", action, exc.error)
            return {"closed": False, "errors": {}}
        emulator.close_modal(user)
        return {"closed": True, "errors": {}}

    def close(self, *, user: str) -> None:
        """Dismiss the open modal (no ``view_closed`` event: the bot does not ask for one)."""
        self._announce({"do": "close", "user": user})
        self.emulator.close_modal(user)

    # -- surfaces ---------------------------------------------------------------------------

    async def open_home(self, *, user: str) -> Ack:
        """Open the App Home tab (``app_home_opened``)."""
        emulator = self.emulator
        self._announce({"do": "open_home", "user": user})
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user,
            "channel": emulator.dm_of(user),
            "tab": "home",
        }
        view = emulator.home_view(user)
        if view is not None:
            event["view"] = view
        return await self.sender.event(event)

    async def start_assistant(self, *, user: str, context_channel: str | None = None) -> str:
        """Open a new Assistant thread; returns its ``thread_ts``."""
        emulator = self.emulator
        dm = emulator.dm_of(user)
        root = emulator.add_message(
            dm,
            "New chat",
            user=None,
            subtype="assistant_app_thread",
            assistant_app_thread={"title": "", "context": {}},
        )
        self._announce(
            {"do": "start_assistant", "user": user, "context_channel": context_channel},
            created=root["ts"],
        )
        context: dict[str, Any] = {"team_id": emulator.team_id, "enterprise_id": None}
        if context_channel:
            context["channel_id"] = context_channel
        event = {
            "type": "assistant_thread_started",
            "assistant_thread": {
                "user_id": user,
                "channel_id": dm,
                "thread_ts": root["ts"],
                "context": context,
            },
        }
        self._spawn(self.sender.event(event))
        return str(root["ts"])

    # -- plumbing ---------------------------------------------------------------------------

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every delivery and the bot's background work are done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
            if self._idle is not None:
                await asyncio.wait_for(self._idle(), timeout=max(0.1, deadline - loop.time()))
            if not self._tasks:
                return
            if loop.time() > deadline:
                raise TimeoutError("the bot is still busy")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery to the bot failed", exc_info=task.exception())

    def _announce(self, action: dict[str, Any], *, created: str | None = None) -> None:
        record = {k: v for k, v in action.items() if v is not None}
        if created is not None:
            record["created"] = created
        for observer in list(self.observers):
            observer(record)

    def _user(self, user: str) -> dict[str, Any]:
        found = self.emulator.users.get(user)
        if found is None:
            raise ActionError("unknown person")
        return {
            "id": user,
            "username": found["name"],
            "name": found["name"],
            "team_id": self.emulator.team_id,
        }


def _channel_type(channel: dict[str, Any]) -> str:
    if channel["is_im"]:
        return "im"
    return "group" if channel["is_private"] else "channel"


def _explain(error: str) -> str:
    return {
        "not_in_channel": "you are not a member of this channel",
        "channel_not_found": "there is no such channel",
        "thread_not_found": "that thread is gone",
        "user_not_found": "unknown person",
    }.get(error, error)


def _elements(blocks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str]]:
    for index, block in enumerate(blocks):
        block_id = str(block.get("block_id") or f"b{index}")
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                yield element, block_id
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            yield block["accessory"], block_id
        elif block.get("type") == "input" and isinstance(block.get("element"), dict):
            yield block["element"], block_id


def _element(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None
) -> tuple[dict[str, Any] | None, str]:
    for element, found_block in _elements(blocks):
        if element.get("action_id") == action_id and block_id in (None, found_block):
            return element, found_block
    return None, block_id or ""


def _option(element: dict[str, Any], value: str | None) -> dict[str, Any] | None:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return next((o for o in options if o.get("value") == value), None)


def _action(
    element: dict[str, Any], block_id: str, selected: str | None, emulator: Emulator
) -> dict[str, Any]:
    action: dict[str, Any] = {
        "type": element.get("type"),
        "action_id": element.get("action_id"),
        "block_id": block_id,
        "action_ts": emulator.new_action_ts(),
    }
    if element.get("type") == "button":
        action["text"] = element.get("text")
        if "value" in element:
            action["value"] = element["value"]
        if "style" in element:
            action["style"] = element["style"]
    elif element.get("type") in ("static_select", "radio_buttons"):
        action["selected_option"] = _option(element, selected)
    return action


#: Slack's pickers: the state field Slack fills and the element's initial-value key.
_PICKERS = {
    "conversations_select": ("selected_conversation", "initial_conversation"),
    "channels_select": ("selected_channel", "initial_channel"),
    "users_select": ("selected_user", "initial_user"),
}
_INPUT_KINDS = frozenset(
    {"plain_text_input", "static_select", "number_input", "radio_buttons", *_PICKERS}
)


def _state_values(
    blocks: list[dict[str, Any]], values: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Slack's ``state.values`` for the inputs in ``blocks``, filled from the page's values."""
    state: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if block.get("type") not in ("input", "actions", "section"):
            continue
        elements = (
            [block["element"]]
            if block.get("type") == "input" and isinstance(block.get("element"), dict)
            else list(block.get("elements") or [])
        )
        block_id = str(block.get("block_id") or "")
        for element in elements:
            kind = element.get("type")
            action_id = str(element.get("action_id") or "")
            if kind not in _INPUT_KINDS:
                continue
            raw = (values.get(block_id) or {}).get(action_id)
            if kind in _PICKERS:
                field, initial = _PICKERS[kind]
                picked_id = str(raw) if raw not in (None, "") else element.get(initial)
                state.setdefault(block_id, {})[action_id] = {
                    "type": kind,
                    field: picked_id or None,
                }
                continue
            if kind in ("static_select", "radio_buttons"):
                picked = _option(element, str(raw)) if raw is not None else None
                if picked is None and raw is None:
                    picked = element.get("initial_option")
                entry: dict[str, Any] = {"type": kind, "selected_option": picked}
            else:
                value = raw if raw is not None else element.get("initial_value")
                entry = {"type": kind, "value": None if value in (None, "") else str(value)}
            state.setdefault(block_id, {})[action_id] = entry
    return state
