"""Scenarios: a TOML file that stages a fault and says what the run must show.

Lives here: the scenario model and its loader (`model`), the runner that plays one
(`runner`), a folder of them (`suite`) and the hand-off to a person at the console
(`interactive`). The bundled scenarios ship as the package `simulator.scenarios`
(the folder fixtures/scenarios). May import: `world`, `fleet`, `judge`, `contract` and
`backend` (its settings, faults and the embedded app); never `bench` or `cli`.
"""
