"""`python -m ivr.cli`: the same as the `ivr` command."""
from . import main

main()
