"""`python -m mlffc` runs the command line."""

from mlffc.cli import main

main()
