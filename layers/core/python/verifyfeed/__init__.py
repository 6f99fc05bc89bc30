"""verifyfeed: the typed core shared by every Lambda function of the verification feeder.

Handlers in ``functions/`` only adapt events to the modules here:

- ``config``   the one settings object, read once from the environment
- ``clock``    the injectable clock and the monthly upload blackout
- ``models``   pydantic models of the upstream contracts, queue messages and our own records
- ``rules``    pure normalisation and validation (ID numbers, phones, names, authCodes, plates)
- ``ingest``   streaming readers (CSV in UTF-8/GBK/GB18030, XLSX, JSON Lines) and header mapping
- ``upstream`` the HTTP client, ``authinfo`` and callback signing
- ``ports``    the interfaces the logic does its I/O through, and ``Services``, their bundle
- ``store``    the AWS adapters of ``ports`` (DynamoDB, S3, SQS); every state change is a conditional write
- ``services`` builds ``Services`` on those adapters, once per Lambda sandbox
- ``logic``    the use cases: split a file, upload a batch, apply an audit result, poll
"""

__version__ = "0.1.0"
