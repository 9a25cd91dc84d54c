"""callcenter: call-center controller for Asterisk and FreeSWITCH."""

__version__ = "0.1.0"
