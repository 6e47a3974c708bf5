"""Load generator and deployment comparison for OpenAI-compatible endpoints."""
