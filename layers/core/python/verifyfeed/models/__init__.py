"""Pydantic models: the upstream contracts (``lost_repair``, ``carrier_audit``, ``envelope``),
the queue messages (``messages``) and our own DynamoDB records (``records``)."""
