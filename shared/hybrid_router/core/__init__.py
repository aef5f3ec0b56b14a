"""Routing: decide small or large for one call, run it with fallback, and account for it.

The lowest layer: it imports nothing from ``train``, ``traffic``, ``local``, ``serve`` or ``cli``. The encoder
loads torch and transformers on first use only.
"""
