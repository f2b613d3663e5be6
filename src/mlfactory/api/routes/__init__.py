"""One module of routes per concern; ``main.create_app`` includes them all."""
