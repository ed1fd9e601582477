"""``overheard explore``: generated scenarios, invariants over every run, and shrinking.

:mod:`.generator` draws scenarios, :mod:`.invariants` checks each run, :mod:`.shrinker`
reduces a violating scenario, :mod:`.campaign` runs many in-process (sharded, several
processes) and writes ``summary.json``, ``junit.xml`` and ``found/``.
"""
