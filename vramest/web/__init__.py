"""`vramest web`: the estimate as a local web page, served by the standard library.

Every answer goes through the CLI's own parser and code (`vramest.web.answers`); the page
(`static/`) only draws what the server says, formatted as the CLI formats it.
"""
