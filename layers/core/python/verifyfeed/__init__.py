"""verifyfeed: the typed core shared by every Lambda function of the verification feeder.

Handlers in ``functions/`` only adapt events to the packages and modules here:

- ``config``        the one settings object, read once from the environment
- ``clock``         the injectable clock and the monthly upload blackout
- ``models``        the upstream contracts, queue messages and our own records (pydantic); job and
                    batch identifiers (``ids``); the resend ledger's object format (``ledger``)
- ``rules``         pure normalisation and validation (ID numbers, phones, names, authCodes, plates,
                    carrier-audit rows) and the wire's SHA-256
- ``reasons``       the catalogue of every reason a customer sees, in Chinese and English
- ``pii``           masks and keyed digests of personal data
- ``ingest``        file detection, streaming readers (CSV in UTF-8/UTF-16/GBK/GB18030, workbooks
                    from .xlsx to .ods, JSON Lines) and header mapping
- ``upstream``      the HTTP client, ``authinfo`` and callback signing
- ``ports``         the interfaces the logic does its I/O through, and ``Services``, their bundle
- ``store``         the AWS adapters of ``ports`` (DynamoDB, S3, SQS); every state change is a
                    conditional write
- ``secrets``       upstream credentials, callback secrets and the identity pepper (Secrets Manager)
- ``aws``           the boto3 clients, made once per sandbox and shared
- ``services``      builds ``Services`` on those adapters, once per Lambda sandbox
- ``logic``         the use cases: split a file (with its resend ledger and reports), upload a
                    batch (bisecting a refused one), submit an audit, apply an audit result from the
                    callback or the poller
- ``observability`` the Powertools Logger, Metrics and Tracer every function shares
- ``threads``       thread-pool work that keeps the invocation's context
- ``_fastsplit``    the splitter's C fast path (``layers/core/native``), where it is built
"""

__version__ = "0.1.0"
