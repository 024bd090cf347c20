"""Training: recipes, optimiser and schedule, checkpoints, and the trial loop."""
