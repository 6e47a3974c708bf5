"""vllm-sim: simulated vLLM replicas, in real time over HTTP or in virtual time."""
