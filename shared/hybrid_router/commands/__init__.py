"""Subcommands of the ``hybrid-llm`` console script (see :mod:`hybrid_router.cli`)."""
