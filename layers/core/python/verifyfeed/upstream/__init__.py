"""Talking to upstream: ``authinfo`` (``auth``), callback signatures (``signing``), HTTP (``client``)."""
