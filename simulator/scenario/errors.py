"""The errors of the scenario room; the command line turns them into messages and exit 2."""


class ScenarioError(Exception):
    """A scenario file that cannot be run: names the file, the key and the problem."""


class SeedsError(ValueError):
    """A ``--seeds`` range that cannot be run (not a range, backwards, too long)."""
