"""Ingest: article files read into clean `Article`s (loaders, cleaning), cut into chunks, and the pipeline that indexes them."""
