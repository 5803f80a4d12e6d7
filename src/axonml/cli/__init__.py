"""``axonml`` command line: the model lifecycle from one tool (layer L6)."""
