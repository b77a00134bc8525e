"""The custody ledger's storage: tables, the append path (one linear log) and reads/proofs.

The ledger's logic (canonical encoding, hashing, proofs, checkpoints, verification) lives in
``custody``; this package stores it in the service database.
"""
