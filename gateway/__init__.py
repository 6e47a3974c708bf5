"""The Turnout gateway: an OpenAI-compatible proxy over a fleet of replicas."""
