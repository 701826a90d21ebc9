"""dmsfactory."""
