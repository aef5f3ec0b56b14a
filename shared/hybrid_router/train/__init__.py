"""Training and evaluation: routing data files, labels (det / prob / trans), head recipes, depth selection,
``train_router``, metrics (APGR, cost advantage), the embedding cache and the shipped RouteLLM data."""
