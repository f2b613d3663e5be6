from mlfactory.cli import app

app()
