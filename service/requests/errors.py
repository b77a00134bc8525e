"""Errors of the request domain. No HTTP here: service/problems.py maps them."""

from __future__ import annotations

from service.requests.lifecycle import TransitionRefused


class RequestError(Exception):
    """Base of every request-domain error."""


class RequestNotFound(RequestError):
    """No such request for this authority (what every other authority gets, existing or not)."""


class RequestAccessDenied(RequestError):
    """One of the request's authorities, but not the side or role that may do this."""


class InvalidRequestData(RequestError):
    """Well-formed but unacceptable values (unknown authority, attachments not sealed, ...)."""


class RequestStateConflict(RequestError, TransitionRefused):
    """Not possible in the request's current state."""
