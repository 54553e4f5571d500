"""A Slack workspace and the Web API methods the bot uses: the one Slack fake.

The sandbox serves it to the bot over HTTP (``SLACK_API_URL=http://…/api/``); the tests'
``FakeSlackApi`` wraps it in a threaded server with fault injection; the benchmarks mount
it too. It answers as Slack would, failures included:

- the bot token (``not_authed`` / ``invalid_auth``);
- unknown channels, users, usergroups, messages, threads and views (``channel_not_found``,
  ``user_not_found``, ``no_such_subteam``, ``message_not_found``, ``thread_not_found``,
  ``not_found``), the bot outside a channel (``not_in_channel``), someone else's message
  (``cant_update_message``);
- a message without text or blocks (``no_text``), over-long text (``msg_too_long``);
- Block Kit parsed and checked with ``slack_sdk.models`` (``invalid_blocks`` with the
  reasons in ``errors``, as Slack lists them), views likewise (``invalid_arguments``);
- a per-channel rate limit on message writes: a token bucket per channel, answered with
  HTTP 429, ``Retry-After`` and ``ratelimited`` when a channel's burst is spent;
- trigger ids that expire after three seconds (``expired_trigger_id``), response URLs that
  accept five uses in thirty minutes;
- who is in which conversation (``conversations.members``, ``users.conversations``,
  ``conversations.info`` with ``is_im`` and the DM's ``user``) and guest and Slack Connect
  users (``is_restricted``, ``is_ultra_restricted``, another ``team_id``), which the bot
  uses to read only what the person asking may read.

Modules: :mod:`~sandbox.workspace.state` (the workspace and its shared lookups),
:mod:`~sandbox.workspace.blocks` (Block Kit checks), one module per API family
(``chat``, ``conversations``, ``users``, ``views``, ``reactions``, ``assistant``),
:mod:`~sandbox.workspace.core` (dispatch, token, rate limit, interactions) and
:mod:`~sandbox.workspace.http` (the Starlette routes).
"""

from sandbox.workspace._args import is_top_level
from sandbox.workspace.blocks import SlackError, check_blocks, check_view
from sandbox.workspace.core import METHODS, UNLIMITED, ApiCall, Emulator, RateLimit
from sandbox.workspace.http import parse_call, routes
from sandbox.workspace.state import Change, WorkspaceState, dm_channel_id

__all__ = [
    "METHODS",
    "UNLIMITED",
    "ApiCall",
    "Change",
    "Emulator",
    "RateLimit",
    "SlackError",
    "WorkspaceState",
    "check_blocks",
    "check_view",
    "dm_channel_id",
    "is_top_level",
    "parse_call",
    "routes",
]
