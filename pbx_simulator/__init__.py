"""PBX simulator: a TCP server that speaks AMI as Asterisk 22 does (see
``shared/ami-captures``), with a pure core (:class:`ManagerCore`) and a Twisted shell
(:func:`serve`)."""

from .manager import Close, ManagerCore, Send
from .server import serve
from .settings import Hint, Member, QueueSettings, Route, Settings, TrafficSettings

__all__ = [
    "Close",
    "Hint",
    "ManagerCore",
    "Member",
    "QueueSettings",
    "Route",
    "Send",
    "Settings",
    "TrafficSettings",
    "serve",
]
