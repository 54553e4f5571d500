"""What the sandbox workspace starts with: the built-in sample, a seed file, or the saved state.

The built-in sample is :func:`skills.sample.sample_workspace` (a payments company with
people in six time zones, an approvers group and a day of alert-channel history). A seed
file (YAML or JSON) describes another workspace::

    team: {id: T0ACME, name: Acme}
    users:
      - {id: U0ANA, name: ana, real_name: Ana Lima, tz: Europe/Lisbon, title: Support lead}
      - {id: U0BEN, name: ben, tz: America/Chicago}
      - {id: U0GIA, name: gia, guest: multi}         # a guest (multi or single channel)
      - {id: U0EXT, name: eve, team: T0PARTNER}      # Slack Connect: another organization
    usergroups:
      - {id: S0LEADS, handle: leads, name: Leads, members: [U0ANA]}
    channels:
      - {id: C0GENERAL, name: general, topic: Everything, members: [U0ANA, U0BEN]}
    messages:
      - channel: C0GENERAL
        user: U0BEN
        text: Is the deploy done?
        minutes_ago: 90
        replies:
          - {user: U0ANA, text: "yes, 10 minutes ago", minutes_after: 4}

Channel ``members`` default to every person; Switchboard joins every channel unless the
channel says ``bot: false``. Timestamps are relative to the moment of seeding, so history
is always recent. Mistakes raise :class:`SeedError` naming the file and the entry.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox.workspace import Emulator, SlackError
from skills.pii import mask_obj, mask_text
from skills.sample import sample_workspace

__all__ = ["SeedError", "load_state", "mask_saved", "save_state", "seed_file", "seed_sample"]

# Values that are identifiers or Slack timestamps, never text someone typed: left as they
# are, so a long digit run in a ts or an id is not mistaken for a card number.
_ID_KEYS = frozenset({"id", "ts", "hash", "started", "event_time", "created", "updated"})
_SLACK_TS = re.compile(r"^\d{9,10}\.\d{6}$")
_SLACK_ID = re.compile(r"^[A-Z][A-Z0-9]{6,}$")


def _is_identifier(key: str, value: Any) -> bool:
    if key in _ID_KEYS or key.endswith(("_id", "_ts", "_ids")):
        return True
    return isinstance(value, str) and bool(_SLACK_TS.match(value) or _SLACK_ID.match(value))


def mask_saved(value: Any, key: str = "") -> Any:
    """``value`` (a workspace snapshot, a recording entry) with card numbers, IBANs and
    e-mails masked wherever people's text can be — messages, blocks, views, form values,
    API arguments — and identifiers and timestamps left intact, so replays still line up.
    What the sandbox writes to disk goes through this; what it shows live does not."""
    if isinstance(value, dict):
        return {k: mask_saved(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_saved(v, key) for v in value]
    if _is_identifier(key, value):
        return value
    if isinstance(value, str):
        return mask_text(value)
    return mask_obj(value)


class SeedError(Exception):
    """A seed file cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _ts(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def seed_sample(emulator: Emulator, now: datetime) -> None:
    """Fill ``emulator`` with the built-in sample workspace, timestamps relative to ``now``."""
    workspace = sample_workspace(now)
    emulator.team_id = workspace.team_id
    emulator.team_name = workspace.team_name
    for user in workspace.users.values():
        if user.id == emulator.bot_user_id:
            continue
        emulator.add_user(
            user.id,
            user.name,
            real_name=user.real_name,
            tz=user.tz,
            title=user.title or "",
            is_bot=user.is_bot,
            team_id=user.team_id,
            is_restricted=user.is_restricted,
            is_ultra_restricted=user.is_ultra_restricted,
        )
    for channel in workspace.channels.values():
        members = [*channel.members, emulator.bot_user_id]
        emulator.add_channel(
            channel.id,
            channel.name,
            topic=channel.topic,
            members=members,
            is_private=channel.is_private,
        )
    for group in workspace.usergroups.values():
        emulator.add_usergroup(group.id, group.handle, group.name, sorted(group.members))
    for message in sorted(workspace.messages, key=lambda m: float(m.ts)):
        emulator.add_message(
            message.channel,
            message.text,
            user=message.user,
            ts=message.ts,
            thread_ts=message.thread_ts if message.is_reply else None,
            join=True,
        )


def seed_file(emulator: Emulator, path: Path, now: datetime) -> None:
    """Fill ``emulator`` from a YAML or JSON seed file (see the module docstring)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise SeedError(path, f"not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(data, Mapping):
        raise SeedError(path, "expected a mapping with users, channels, messages")
    try:
        _apply(emulator, data, now)
    except (KeyError, TypeError, ValueError) as exc:
        raise SeedError(path, str(exc)) from None
    except SlackError as exc:
        raise SeedError(path, f"a message was refused: {exc.error}") from None


def _entries(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"{key}: expected a list of mappings")
    return value


def _need(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: `{key}` is required")
    return value


def _apply(emulator: Emulator, data: Mapping[str, Any], now: datetime) -> None:
    team = data.get("team") or {}
    if not isinstance(team, Mapping):
        raise ValueError("team: expected {id, name}")
    emulator.team_id = str(team.get("id") or emulator.team_id)
    emulator.team_name = str(team.get("name") or emulator.team_name)
    people: list[str] = []
    for index, entry in enumerate(_entries(data, "users")):
        where = f"users[{index}]"
        user_id = _need(entry, "id", where)
        guest = entry.get("guest")
        if guest not in (None, False, "multi", "single"):
            raise ValueError(f"{where}: `guest` is `multi` or `single`, not {guest!r}")
        emulator.add_user(
            user_id,
            _need(entry, "name", where),
            real_name=entry.get("real_name"),
            tz=entry.get("tz"),
            title=str(entry.get("title") or ""),
            is_bot=bool(entry.get("is_bot")),
            team_id=str(entry["team"]) if entry.get("team") else None,
            is_restricted=guest == "multi",
            is_ultra_restricted=guest == "single",
        )
        if not entry.get("is_bot"):
            people.append(user_id)
    if not people:
        raise ValueError("users: at least one person is needed to use the sandbox")
    for index, entry in enumerate(_entries(data, "usergroups") or _entries(data, "groups")):
        where = f"usergroups[{index}]"
        members = [str(m) for m in entry.get("members") or []]
        for member in members:
            if member not in emulator.users:
                raise ValueError(f"{where}: unknown member {member}")
        emulator.add_usergroup(
            _need(entry, "id", where),
            _need(entry, "handle", where),
            str(entry.get("name") or entry["handle"]),
            members,
        )
    for index, entry in enumerate(_entries(data, "channels")):
        where = f"channels[{index}]"
        members = [str(m) for m in entry.get("members") or people]
        for member in members:
            if member not in emulator.users:
                raise ValueError(f"{where}: unknown member {member}")
        if entry.get("bot", True):
            members.append(emulator.bot_user_id)
        emulator.add_channel(
            _need(entry, "id", where),
            _need(entry, "name", where),
            topic=str(entry.get("topic") or ""),
            members=members,
            is_private=bool(entry.get("private")),
        )
    for index, entry in enumerate(_entries(data, "messages")):
        where = f"messages[{index}]"
        channel = _need(entry, "channel", where)
        if channel not in emulator.channels:
            raise ValueError(f"{where}: unknown channel {channel}")
        at = now - timedelta(minutes=float(entry.get("minutes_ago") or 0))
        root = emulator.add_message(
            channel,
            _need(entry, "text", where),
            user=_need(entry, "user", where),
            ts=_ts(at),
            join=True,
        )
        for reply_index, reply in enumerate(entry.get("replies") or []):
            reply_where = f"{where}.replies[{reply_index}]"
            if not isinstance(reply, Mapping):
                raise ValueError(f"{reply_where}: expected a mapping")
            moment = at + timedelta(minutes=float(reply.get("minutes_after") or reply_index + 1))
            emulator.add_message(
                channel,
                _need(reply, "text", reply_where),
                user=_need(reply, "user", reply_where),
                ts=_ts(moment),
                thread_ts=root["ts"],
                join=True,
            )


def save_state(emulator: Emulator, path: Path) -> None:
    """Write the workspace to ``path`` atomically (a crash never leaves half a file),
    PII-masked (:func:`mask_saved`) and readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".workspace-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(mask_saved(emulator.snapshot()), handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(emulator: Emulator, path: Path) -> bool:
    """Load a saved workspace; False when there is none or it is unreadable (then reseed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or not data.get("users"):
        return False
    emulator.load(data)
    return True
