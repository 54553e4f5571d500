"""Agent middleware for the skills runtime."""

from skills.middleware.pii import PiiMiddleware
from skills.middleware.trim import ToolResultTrimMiddleware

__all__ = ["PiiMiddleware", "ToolResultTrimMiddleware"]
