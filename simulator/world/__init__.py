"""The world: households, their people and devices, what they say and how it sounds.

Lives here: the household model and the seeded world (`households`), what is said in
each language (`phrasebook`, reading the data files `phrases/<locale>.toml`), the voices
and the PCM they render (`audio`, `speech`). Pure and deterministic: no network, no backend, no
ledger. May import: the standard library, third-party libraries and `contract` when present;
never another simulator room, never `backend`.
"""
