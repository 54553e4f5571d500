"""The scripted chat model the tests use: :mod:`switchboard.testing` (bench/ uses it too,
and bench/ never imports tests/)."""

from switchboard.testing import ScriptedChatModel, ScriptExhaustedError, Step, reply, tool_call

__all__ = ["ScriptExhaustedError", "ScriptedChatModel", "Step", "reply", "tool_call"]
