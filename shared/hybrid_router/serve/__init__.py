"""The router as a service: an OpenAI-compatible app (``hybrid-llm serve``), its chat backends, and the demo."""
