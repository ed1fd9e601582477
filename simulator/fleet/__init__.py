"""The fleet: the devices that stream the world into a backend, and the ledger of what they said.

Lives here: the HTTP client of the backend's API (`client`), one device's stream
(`device`), the fleet that registers households and streams utterances (`streaming`),
the backend run in this process or as a child process (`embedded`), the ground-truth
ledger (`ledger`) and the progress lines (`progress`). May import: `world`, `backend`
(only to embed it) and `contract`; never `judge`, `scenario`, `bench` or `cli`.
"""
