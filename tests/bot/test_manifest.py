"""deploy/slack-manifest.yaml against the code: events, scopes, command, URLs.

The manifest is what a Slack admin installs, so a mismatch shows up only in production: an
event nobody subscribed to never arrives, a missing scope fails with ``missing_scope``. These
tests read the listeners and Web API calls from the source and fail when someone changes
one without the other.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from slack_sdk.web.async_base_client import AsyncBaseClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.views.blocks import COMMAND

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "slack-manifest.yaml"
LISTENERS = ROOT / "bot" / "listeners"
# Packages that may hold the Web API client; skills/ gets only the read-only SlackReader,
# but scanning it too means a future direct call cannot slip past.
SCANNED = ("bot", "skills", "scheduler", "switchboard")
EVENTS_PATH = "/slack/events"

# What each Web API method the code calls needs (https://docs.slack.dev/reference/methods).
# Conversation reads need the scope of the conversation's kind, and the bot reads whichever
# conversation it was asked in, so all kinds are needed.
_HISTORY = frozenset({"channels:history", "groups:history", "im:history", "mpim:history"})
_READ = frozenset({"channels:read", "groups:read", "im:read", "mpim:read"})
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.startStream": frozenset({"chat:write"}),
    "chat.appendStream": frozenset({"chat:write"}),
    "chat.stopStream": frozenset({"chat:write"}),
    "conversations.history": _HISTORY,
    "conversations.replies": _HISTORY,
    "conversations.info": _READ,
    "conversations.members": _READ,
    "users.conversations": _READ,
    "users.info": frozenset({"users:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "reactions.add": frozenset({"reactions:write"}),
    "reactions.remove": frozenset({"reactions:write"}),
    "assistant.threads.setStatus": frozenset({"assistant:write"}),
    "assistant.threads.setSuggestedPrompts": frozenset({"assistant:write"}),
    "assistant.threads.setTitle": frozenset({"assistant:write"}),
    "conversations.open": frozenset({"im:write"}),  # one user: a DM (several: mpim:write)
    "views.open": frozenset(),  # views.* need no scope
    "views.publish": frozenset(),
    "auth.test": frozenset(),
    # Called with the app-level token (connections:write), which a manifest can't declare.
    "apps.connections.open": frozenset(),
}

# What each subscribed bot event needs (https://docs.slack.dev/reference/events).
EVENT_SCOPES: dict[str, frozenset[str]] = {
    "app_mention": frozenset({"app_mentions:read"}),
    "message.channels": frozenset({"channels:history"}),
    "message.groups": frozenset({"groups:history"}),
    "message.im": frozenset({"im:history"}),
    "message.mpim": frozenset({"mpim:history"}),
    "assistant_thread_started": frozenset({"assistant:write"}),
    "assistant_thread_context_changed": frozenset({"assistant:write"}),
    "app_home_opened": frozenset(),
    "member_joined_channel": frozenset({"channels:read", "groups:read"}),
    "member_left_channel": frozenset({"channels:read", "groups:read"}),
    "channel_left": frozenset({"channels:read"}),
    "group_left": frozenset({"groups:read"}),
}

# The `message` listener answers DMs (and the assistant panel, which is a DM) and thread
# follow-ups in public and private channels.
MESSAGE_EVENTS = frozenset({"message.channels", "message.groups", "message.im"})

# The parts of Slack's manifest schema (github.com/slackapi/manifest-schema) this manifest
# uses, closed with additionalProperties: false so a misspelt key fails here, not in Slack.
_URL = {"type": "string", "pattern": "^https://", "maxLength": 3000}
_BOOL = {"type": "boolean"}
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["_metadata", "display_information", "features", "oauth_config", "settings"],
    "properties": {
        "_metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"major_version": {"enum": [1, 2]}, "minor_version": {"type": "integer"}},
        },
        "display_information": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "minLength": 1, "maxLength": 140},
                "background_color": {
                    "type": "string",
                    "pattern": "^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$",
                },
                "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
            },
        },
        "features": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "app_home": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "home_tab_enabled": _BOOL,
                        "messages_tab_enabled": _BOOL,
                        "messages_tab_read_only_enabled": _BOOL,
                    },
                },
                "bot_user": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["display_name"],
                    "properties": {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": _BOOL,
                    },
                },
                "slash_commands": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["command", "description"],
                        "properties": {
                            "command": {"type": "string", "pattern": "^/", "maxLength": 32},
                            "url": _URL,
                            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "should_escape": _BOOL,
                        },
                    },
                },
                "assistant_view": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["assistant_description"],
                    "properties": {
                        "assistant_description": {"type": "string", "minLength": 1},
                        "suggested_prompts": {
                            "type": "array",
                            "maxItems": 4,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["title", "message"],
                                "properties": {
                                    "title": {"type": "string", "minLength": 1},
                                    "message": {"type": "string", "minLength": 1},
                                },
                            },
                        },
                    },
                },
            },
        },
        "oauth_config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "scopes": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "bot": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
                    },
                }
            },
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "event_subscriptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "request_url": _URL,
                        "bot_events": {
                            "type": "array",
                            "items": {"type": "string"},
                            "uniqueItems": True,
                        },
                    },
                },
                "interactivity": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["is_enabled"],
                    "properties": {"is_enabled": _BOOL, "request_url": _URL},
                },
                "org_deploy_enabled": _BOOL,
                "socket_mode_enabled": _BOOL,
                "token_rotation_enabled": _BOOL,
            },
        },
    },
}


# -- reading the manifest and the code ---------------------------------------------------------


@cache
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{MANIFEST} is not a YAML mapping"
    return data


def bot_scopes() -> set[str]:
    return set(manifest()["oauth_config"]["scopes"]["bot"])


def bot_events() -> set[str]:
    return set(manifest()["settings"]["event_subscriptions"]["bot_events"])


def listener_sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(LISTENERS.glob("*.py")):
        yield path, path.read_text(encoding="utf-8")


_EVENT_LISTENER = re.compile(r"""@\w+\.event\(\s*["']([a-z_.]+)["']""")
_MESSAGE_LISTENER = re.compile(r"@\w+\.message\(")
_INTERACTIVE_LISTENER = re.compile(
    r"@\w+\.(action|view|view_submission|view_closed|block_action|shortcut|options)\("
)
_COMMAND_LISTENER = re.compile(r"""@\w+\.command\(\s*(?:["']([^"']+)["']|([\w.]+))""")


def registered_events() -> set[str]:
    """Event types the listeners register (``@app.message`` counts as ``message``)."""
    events: set[str] = set()
    for _path, source in listener_sources():
        events.update(_EVENT_LISTENER.findall(source))
        if _MESSAGE_LISTENER.search(source):
            events.add("message")
    return events


def needed_subscriptions(events: set[str]) -> set[str]:
    """The manifest's ``bot_events`` for listener event types (``message`` → ``message.*``)."""
    needed = set(events - {"message"})
    if "message" in events:
        needed |= MESSAGE_EVENTS
    return needed


def _web_api_names() -> dict[str, str]:
    """``chat_postMessage`` → ``chat.postMessage`` for every AsyncWebClient API method."""
    base = set(dir(AsyncBaseClient))
    return {
        name: name.replace("_", ".")
        for name in dir(AsyncWebClient)
        if not name.startswith("_") and name not in base and callable(getattr(AsyncWebClient, name))
    }


def called_methods() -> dict[str, set[str]]:
    """:func:`_scan` in a fresh interpreter.

    CPython 3.11.7's ``ast.parse`` can raise "AST constructor recursion depth mismatch"
    when another thread of the process changes the recursion limit while it runs (the
    full suite has such threads; fixed in later CPython releases), so the scan gets a
    process of its own.
    """
    script = (
        "import json; from tests.bot.test_manifest import _scan; "
        "print(json.dumps({k: sorted(v) for k, v in _scan().items()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {method: set(files) for method, files in json.loads(result.stdout).items()}


def _scan() -> dict[str, set[str]]:
    """Web API methods the code calls → the files calling them.

    Found by reading the source: ``client.chat_postMessage(…)``, a bound method taken
    without calling it (``client.reactions_add if on else …``), and string method names
    passed to ``api_call`` or the reader's ``_call``/``_pages`` helpers.
    """
    names = _web_api_names()
    found: dict[str, set[str]] = {}
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                method = None
                if isinstance(node, ast.Attribute) and node.attr in names:
                    method = names[node.attr]
                elif isinstance(node, ast.Call) and node.args:
                    func = node.func
                    callee = (
                        func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    )
                    first = node.args[0]
                    if (
                        callee in {"api_call", "_call", "_pages"}
                        and isinstance(first, ast.Constant)
                        and isinstance(first.value, str)
                    ):
                        method = first.value
                if method is not None:
                    found.setdefault(method, set()).add(where)
    return found


# -- the manifest is a valid manifest ------------------------------------------------------------


def test_manifest_has_the_shape_slack_accepts() -> None:
    jsonschema.validate(manifest(), MANIFEST_SCHEMA)


def test_app_is_switchboard_with_an_always_online_bot_and_no_token_rotation() -> None:
    features = manifest()["features"]
    assert manifest()["display_information"]["name"] == "Switchboard"
    assert features["bot_user"] == {"display_name": "switchboard", "always_online": True}
    settings = manifest()["settings"]
    # HTTP mode by default; docs/slack.md says how to flip it for `switchboard socket`.
    assert settings["socket_mode_enabled"] is False
    # The bot token is read once from SLACK_BOT_TOKEN; rotating tokens would expire it.
    assert settings["token_rotation_enabled"] is False


# -- events ------------------------------------------------------------------------------------


def test_every_event_a_listener_registers_is_subscribed() -> None:
    events = registered_events()
    # The parser must see the listeners, or this test would pass on nothing.
    assert {"app_mention", "message"} <= events, f"listener parsing found only {events}"
    missing = needed_subscriptions(events) - bot_events()
    assert not missing, (
        f"listeners in bot/listeners/ handle {sorted(missing)}, but {MANIFEST.name} does not "
        "subscribe to them (settings.event_subscriptions.bot_events): Slack would never send them"
    )


def test_every_subscribed_event_has_a_listener() -> None:
    events = registered_events()
    handled = {
        e for e in bot_events() if e in events or (e.startswith("message.") and "message" in events)
    }
    unhandled = bot_events() - handled
    assert not unhandled, (
        f"{MANIFEST.name} subscribes to {sorted(unhandled)}, which no listener handles"
    )


def test_every_subscribed_event_has_its_scope() -> None:
    unknown = bot_events() - EVENT_SCOPES.keys()
    assert not unknown, f"add {sorted(unknown)} with their scopes to EVENT_SCOPES in this test"
    for event in sorted(bot_events()):
        missing = EVENT_SCOPES[event] - bot_scopes()
        assert not missing, f"event {event} needs scope(s) {sorted(missing)}"


def test_app_home_and_dms_are_on_because_listeners_use_them() -> None:
    app_home = manifest()["features"]["app_home"]
    assert "app_home_opened" in registered_events()
    assert app_home["home_tab_enabled"] is True  # App Home lists the person's skills
    assert app_home["messages_tab_enabled"] is True  # DMs to the bot are answered
    assert app_home.get("messages_tab_read_only_enabled") is not True


def test_assistant_panel_is_declared_for_the_assistant_listeners() -> None:
    assert {"assistant_thread_started", "assistant_thread_context_changed"} <= registered_events()
    view = manifest()["features"]["assistant_view"]
    assert view["assistant_description"].strip()
    assert 1 <= len(view["suggested_prompts"]) <= 4


# -- scopes ------------------------------------------------------------------------------------


def test_every_web_api_method_the_code_calls_has_its_scope() -> None:
    calls = called_methods()
    # The scan must see both kinds of call, or this test would pass on nothing.
    assert {"chat.postMessage", "conversations.replies", "reactions.remove"} <= calls.keys(), (
        f"method discovery found only {sorted(calls)}"
    )
    unknown = {m: sorted(files) for m, files in calls.items() if m not in METHOD_SCOPES}
    assert not unknown, (
        f"new Web API method(s) {unknown}: add them with their scopes "
        f"(https://docs.slack.dev/reference/methods) to METHOD_SCOPES here and to {MANIFEST.name}"
    )
    for method in sorted(calls):
        missing = METHOD_SCOPES[method] - bot_scopes()
        assert not missing, (
            f"{method} (called in {sorted(calls[method])}) needs scope(s) {sorted(missing)} "
            f"in {MANIFEST.name}: it would fail with missing_scope"
        )


def test_no_scope_is_granted_that_nothing_needs() -> None:
    # Least privilege: the workspace admin approves every scope, and message data here can
    # hold card numbers and personal data.
    needed: set[str] = {"commands"} if manifest()["features"].get("slash_commands") else set()
    for method in called_methods():
        needed |= METHOD_SCOPES.get(method, frozenset())
    for event in bot_events():
        needed |= EVENT_SCOPES.get(event, frozenset())
    unneeded = bot_scopes() - needed
    assert not unneeded, f"{MANIFEST.name} asks for {sorted(unneeded)}, which no code uses"


# -- command, interactivity, URLs ----------------------------------------------------------------


def test_the_slash_command_is_declared_as_the_listener_registers_it() -> None:
    registered: set[str] = set()
    for _path, source in listener_sources():
        for literal, name in _COMMAND_LISTENER.findall(source):
            registered.add(
                literal or {"views.COMMAND": COMMAND, "COMMAND": COMMAND}.get(name, name)
            )
    assert registered == {"/switchboard"}
    declared = {c["command"]: c for c in manifest()["features"]["slash_commands"]}
    assert declared.keys() == registered
    command = declared["/switchboard"]
    # Escaped: Slack sends channels and people as <#C…|name> and <@U…>, which the
    # schedule and digest parsers read (a bare "#name" only resolves in its own channel).
    assert command["should_escape"] is True
    for word in ("help", "skills", "reset", "<skill> <text>"):
        assert word in command["usage_hint"]


def test_interactivity_is_on_because_buttons_and_modals_are_handled() -> None:
    interactive = [
        p.name for p, source in listener_sources() if _INTERACTIVE_LISTENER.search(source)
    ]
    assert interactive, "no action or view listener found; is the parser broken?"
    assert manifest()["settings"]["interactivity"]["is_enabled"] is True


def request_urls() -> dict[str, str]:
    settings = manifest()["settings"]
    urls = {
        "event_subscriptions": settings["event_subscriptions"]["request_url"],
        "interactivity": settings["interactivity"]["request_url"],
    }
    for command in manifest()["features"]["slash_commands"]:
        urls[command["command"]] = command["url"]
    return urls


@pytest.mark.parametrize("where", ["event_subscriptions", "interactivity", "/switchboard"])
def test_request_urls_are_the_one_https_events_endpoint(where: str) -> None:
    url = urlsplit(request_urls()[where])
    assert url.scheme == "https"  # Slack refuses plain HTTP request URLs
    assert url.path == EVENTS_PATH


def test_the_events_endpoint_is_the_route_the_http_app_serves() -> None:
    source = (ROOT / "bot" / "http.py").read_text(encoding="utf-8")
    assert f'Route("{EVENTS_PATH}"' in source
    hosts = {urlsplit(u).netloc for u in request_urls().values()}
    assert len(hosts) == 1, f"request URLs point at different hosts: {sorted(hosts)}"
