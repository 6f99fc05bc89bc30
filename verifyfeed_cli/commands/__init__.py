"""One module per command: its arguments (``add_parser``), what it reads (``collect``) and how that
reads on a screen (``render``); ``run`` joins them into a ``Result`` (``verifyfeed_cli.context``)."""
