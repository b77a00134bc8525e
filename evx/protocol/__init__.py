"""The HTTP contract both sides share, defined once: problem types, header names, token refusal
reasons (and, in :mod:`evx.protocol.names`, item names).

Imported by the service (``service/``) and by the client (``evx.client``); it imports nothing
but the standard library, so the client installs and runs without the server.
"""
