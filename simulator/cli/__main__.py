"""``python -m simulator.cli``: the same command line as the ``overheard`` script."""

from simulator.cli import main

main()
