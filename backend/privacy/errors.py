"""The privacy jobs' errors."""


class JobFailed(Exception):
    """A job cannot finish; the message is shown to the requester as the error."""


class PackageAborted(Exception):
    """The build was told to stop (shutdown); the partial file is discarded."""
