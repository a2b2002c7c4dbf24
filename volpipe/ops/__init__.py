"""Operations: the embedded services, their health checks, the demo and the process harness.

Nothing in the pipeline's logic imports this package; it drives the pipeline from outside
(start, check, run end to end), the way a user or a test does.
"""
