"""The index: chunk vectors in Chroma (store), BM25 over the same chunks (keywords), and the embedder."""
