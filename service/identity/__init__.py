"""Federated identity: the trust registry of partner authorities and their public keys, officer
token verification (``tokens`` is the only module that knows the JOSE library), bearer
authentication for the HTTP layer, and dev/test token issuing."""
