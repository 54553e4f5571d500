"""User-facing text and Block Kit builders."""
