"""Fixtures for real models: the shipped small model and a real OpenAI-compatible server on 127.0.0.1."""
