"""App Home: one builder for the tab, used when it is opened and after anything done there.

Slack shows the last view published for a person, so whatever changes what App Home says
(a decision on an approval listed there, a schedule paused from there) publishes it again
through :func:`publish_home`; otherwise the tab keeps showing live buttons for a request
that was decided minutes ago.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.views import blocks as views

if TYPE_CHECKING:  # bot.listeners imports this module
    from bot.listeners._context import BotContext

log = logging.getLogger(f"switchboard.{__name__}")

__all__ = ["publish_home"]


async def publish_home(bot: BotContext, client: AsyncWebClient, user: str) -> bool:
    """Build and publish ``user``'s App Home; False (logged) when Slack refused it."""
    conversations = bot.conversations
    runtime = conversations.runtime
    actor = await conversations.directory.actor(user)
    skills = runtime.available_skills(actor, None)
    sections: list[Block] = []
    for section in bot.home_sections:
        try:
            sections.extend(await section(actor))
        except Exception:  # one broken section must not blank the whole tab
            log.exception("App Home section failed")
    view = views.home_view(
        skills,
        user=user,
        sections=sections,
        examples={skill.name: runtime.examples(skill) for skill in skills},
    )
    try:
        await client.views_publish(user_id=user, view=view)
    except SlackApiError as exc:  # e.g. a user Slack does not know: acked, logged
        log.warning("App Home not published: %s", exc.response.get("error"))
        return False
    return True
