"""Tickets: complaints and requests created from calls, with deadlines by value tier.
Empty until the tickets issue; they will read the call history (``cti.history``)."""
