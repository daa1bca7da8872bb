"""Reading a list exactly once: pages counted by key, windows reconciled and re-read, the CDK's
partitions, one-answer lists, and the audit of what was read. Imports `telecmi/`, never the reverse.
"""
