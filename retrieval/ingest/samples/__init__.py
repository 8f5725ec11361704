"""The bundled sample articles (package data, found with importlib.resources)."""
