"""The chain-of-custody ledger: entries, hashing, Merkle proofs, checkpoints, offline verification.

Pure code a partner can run offline: only the standard library and ``cryptography``.
"""
