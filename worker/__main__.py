"""`python -m worker` runs the scandigits CLI."""

from worker.cli import main

main()
