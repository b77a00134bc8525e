"""HTTP API of evidence-exchange: settings, auth, routers, error mapping, database."""
