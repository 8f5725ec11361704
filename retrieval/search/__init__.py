"""Search: the passages most likely to answer a query, by meaning and by words (hybrid retrieval)."""
