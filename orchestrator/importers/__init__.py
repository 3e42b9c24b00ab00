"""Translators from other orchestrators' flow formats (Kestra, Windmill) into Millrace flows.

Pure: each translator reads source documents and returns Millrace documents with a report of
what was translated, approximated or could not be; saving them is the CLI's job.
"""
