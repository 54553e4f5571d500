"""Agent middleware for the skills runtime."""

from skills.middleware.pii import PiiMiddleware

__all__ = ["PiiMiddleware"]
