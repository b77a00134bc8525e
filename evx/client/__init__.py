"""`evx` as a client of the HTTP API: for investigators, foreign authorities and auditors.

Talks to the service over HTTP only (httpx, streaming) and verifies with :mod:`custody`; it never
imports the service's or the store's internals, so it runs against any deployment. It keeps its
own trusted copy of the log's state (the pinned log key and the last verified checkpoint, per
server) under the user's state directory, so an operator cannot quietly rewrite history.
"""
