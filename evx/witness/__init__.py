"""`evx witness serve`: a C2SP tlog-witness a partner authority runs (stdlib HTTP server + SQLite,
so it needs nothing beyond the client install)."""
