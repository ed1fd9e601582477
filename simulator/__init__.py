"""overheard simulator: the world outside the backend, the ground truth, and the judge.

Households, voices, devices and the fleet produce traffic; the ledger records what really
happened; scenarios compose world, faults and steps; the auditor reads packages and the
ledger (never the backend's tables) and the report says what leaked to whom.

The rooms, each a subpackage whose docstring says what lives there and what it may import:
`world` (households, voices, audio), `fleet` (client, devices, embedded backend, ledger),
`judge` (auditor, identification, reports), `scenario` (model, runner, suite), `bench`
(benchmarks and the soak) and `cli` (the command line, the only place click is imported).
`pytest_plugin` is the pytest entry point. See ARCHITECTURE.md.
"""
