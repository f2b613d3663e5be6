"""Watching models in production: input and prediction drift against the training snapshot."""
