"""`python -m evx`: the same as the `evx` command."""

from evx.cli.main import main

main()
