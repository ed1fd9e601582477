"""The fleet: the devices that stream the world into a backend, and the ledger of what they said.

Lives here: the HTTP client of the backend's API (`client`), a household as the backend
knows it and the only code that registers one (`homes`), the only code that files,
verifies, follows and downloads privacy requests (`access`), one device's stream
(`device`), the fleet that streams the world's utterances (`streaming`),
the backend run in this process or as a child process (`embedded`), the ground-truth
ledger (`ledger`) and the progress lines (`progress`). May import: `world`, `backend`
(only to embed it) and `contract`; never `judge`, `scenario`, `bench` or `cli`.
"""
