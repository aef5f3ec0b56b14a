"""The learning loop: replay recorded traffic, learn (retrain and promote only a better router), report savings.

It orchestrates the routing log and its scoring (:mod:`hybrid_router.traffic`) and training and evaluation
(:mod:`hybrid_router.train`), so it sits above both: ``cli > serve > loop > local | traffic | train > core``.
"""
