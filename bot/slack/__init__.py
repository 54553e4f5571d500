"""Slack Web API access: the one retrying client and the read-only reader for tools."""

from bot.slack.client import create_web_client
from bot.slack.reader import WebApiSlackReader

__all__ = ["WebApiSlackReader", "create_web_client"]
