"""Batch jobs: a JSONL file of OpenAI requests in, OpenAI Batch output lines out, crash-safe."""
