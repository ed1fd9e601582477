"""overheard simulator: the world outside the backend, the ground truth, and the judge.

Households, voices, devices and the fleet produce traffic; the ledger records what really
happened; scenarios compose world, faults and steps; the auditor reads packages and the
ledger (never the backend's tables) and the report says what leaked to whom.
"""
