"""Local models: load the shipped SmolLM2-135M (or any transformers model), chat with it, serve it as a real
OpenAI-compatible server, quantize it and distil it on logged large-model answers."""
