"""Everything that talks to TeleCMI: its platforms and lists, its answers, the HTTP session and the client.

Nothing here knows of windows, ledgers or the audit (`engine/`) or of the connector (`source.py`).
"""
