"""Durable sessions (``mqtt.durable_sessions``): the SQLite store of persistent sessions and retained
messages (``store``) and its service on the event loop (``service``): restore at start-up, batched
writes off the loop thread, a last flush at shutdown."""
