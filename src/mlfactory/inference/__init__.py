"""Inference: the champion model of a registered name, and batch prediction of pending items."""
