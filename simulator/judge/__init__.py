"""The judge: reads what the backend delivered and says whose voices it holds.

Lives here: the package auditor with its zip safety checks and attribution (`audit`),
identifying a speaker from what was said (`identify`), and the run reports with the
Art. 33 draft (`report`). May import: `fleet.ledger` (the ground truth), `world` and
`contract`; never `backend`, `scenario`, `bench` or `cli`.
"""
