"""Signals the feed sends for other apps to act on (dependencies point one way: they listen)."""

from django.dispatch import Signal

# A Kite order postback that arrived on the ticker socket: send(sender, order=<Kite's order dict>).
# The orders app connects a receiver; the feed sends it from a worker thread, never the socket's.
order_update = Signal()
