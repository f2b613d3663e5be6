"""Training: fit, evaluate, log and register on MLflow, and the champion rule."""
