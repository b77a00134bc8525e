"""The web application for officers and auditors: server-rendered pages under ``/app/``, same
origin as the API, signed in through the officer's own authority (docs/web.md)."""
