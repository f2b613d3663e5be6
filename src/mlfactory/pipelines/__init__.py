"""The built-in pipelines, one module each; registered as entry points in pyproject.toml."""
