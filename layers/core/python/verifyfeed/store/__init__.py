"""The AWS adapters of ``ports.py``: jobs, audits and the ledger's lock on DynamoDB, blobs and the
ledger's objects on S3, the work queue on SQS. Every state change is a conditional write; counters
move in the same transaction as the state they count, so a count can never drift from the records."""
