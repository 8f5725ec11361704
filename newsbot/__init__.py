"""newsbot: answers questions about a collection of news articles, with every claim cited."""

__version__ = "0.1.0"
