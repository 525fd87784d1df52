"""`python -m pipeline` runs the `microdc` command line."""

from pipeline.cli import main

main()
