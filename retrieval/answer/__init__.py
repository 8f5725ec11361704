"""Answer: cited replies and briefings written from retrieved passages, and the Protocols they meet."""
