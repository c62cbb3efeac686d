"""Thin asyncio IO: the client listener and connections, and the runner that drives the cores."""
