"""The local exchange: ``LocalExchange`` (in ``server``) and its command (``__main__``)."""

from ingest.exchange.server import LocalExchange

__all__ = ["LocalExchange"]
