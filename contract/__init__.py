"""What the device side and the backend agree on, in one place that imports neither.

- :mod:`contract.audio`: the one audio format (16 kHz mono s16le) and the WAV header
  writer and reader both sides use;
- :mod:`contract.rfc3339`: how times are spelled on the wire and in packages;
- :mod:`contract.stream`: the device stream's messages as typed models, and its error codes;
- :mod:`contract.package`: the access package's layout: entry names, manifest fields and
  the format version.

Nothing here imports :mod:`backend` or :mod:`simulator`.
"""
