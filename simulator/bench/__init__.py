"""Benchmarks: each measures one path and its floor, the simplest way to do the same work.

Lives here: ingest (`ingest`, with the shared measuring helpers), the export path
(`export`), voice synthesis (`synth`) and the long soak (`soak`). May import: `world`,
`fleet`, `judge`, `contract` and `backend`; never `scenario` or `cli`.
"""
