"""The ingestor (``python -m ingest``) and the local exchange (``python -m ingest.exchange``).

Entrypoints and plumbing only: ``protocol`` classifies frames, ``connection`` keeps the
WebSocket alive, ``sinks`` write Kafka and NDJSON, ``ingestor`` wires them together and
``exchange`` serves the Coinbase protocol locally from ``volpipe.market`` or a recording.
"""
