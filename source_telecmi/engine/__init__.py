"""Reading a list exactly once: pages counted by key, windows reconciled and re-read, the CDK's
partitions, one-answer lists, and the audit of what was read. Imports `telecmi/`, never the reverse,
and never its client: an endpoint is known by the protocol `port.Endpoint`, a page by `telecmi.page`.
"""
