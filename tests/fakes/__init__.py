"""Fakes that stand in at the boundaries: scripted chat models and a local OpenAI server."""
