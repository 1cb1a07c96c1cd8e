"""``python -m taskit`` runs the CLI."""

from taskit.cli import main

main()
