"""The contract's errors."""


class WavError(ValueError):
    """Bytes that are not a readable WAV file (no RIFF/WAVE header, cut short, not PCM)."""
