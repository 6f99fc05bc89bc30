"""Streaming readers for uploaded files and the header mapping they share.

- ``errors``   ``FileRejected``: the file as a whole cannot be read (reason without personal data)
- ``headers``  header text → canonical field, per job kind; kind detection
- ``readers``  ``open_rows``: CSV (UTF-8, UTF-8 BOM, UTF-16, GBK/GB18030), XLSX, JSON Lines → rows
"""
