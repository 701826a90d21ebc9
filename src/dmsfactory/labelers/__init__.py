"""labelers package."""
