"""The OpenAI-compatible fake model server the tests use: :mod:`switchboard.openai_fake`
(bench/ uses it too, and bench/ never imports tests/)."""

from switchboard.openai_fake import FakeOpenAIServer, RecordedRequest, Reply, echo

__all__ = ["FakeOpenAIServer", "RecordedRequest", "Reply", "echo"]
