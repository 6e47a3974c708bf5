"""The Switchyard gateway: an OpenAI-compatible proxy over a fleet of replicas."""
