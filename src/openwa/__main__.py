"""`python -m openwa` is the `openwa` command."""

from openwa.cli import main

main()
