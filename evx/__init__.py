"""evidence-exchange's client side: the `evx` command line and the client library.

:mod:`evx.client` talks to a hub over HTTP and verifies with :mod:`custody`; :mod:`evx.cli` is
the command line. Neither imports the service at module level: server-only commands import it
when they run, so the client installs without the server's dependencies.
"""
