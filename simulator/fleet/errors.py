"""The errors of the fleet room; the command line turns them into messages and exit 2."""


class FleetError(Exception):
    """The fleet cannot start: e.g. a data folder it would replace was not made by it."""
