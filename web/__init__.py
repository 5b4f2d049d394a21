"""The agent and supervisor HTTP API: accounts and tokens (``web.accounts``), the FastAPI
application and its authentication (``web.api``, ``web.auth``), and the server that runs it
on the process's asyncio loop, the one Twisted runs on (``web.server``). Domains add their
own routes (``acd.http``); this package knows none of them."""
