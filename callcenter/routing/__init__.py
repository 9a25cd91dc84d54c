"""Routing: the pure core that decides where a call goes, and the ``rules`` CLI.

- ``rules``    the rules file as validated frozen models (``RuleSet``)
- ``loader``   YAML -> RuleSet, errors as ``file:line:column: field.path: reason``
- ``decide``   ``decide(call, customer, live, rules) -> Decision`` and its commands
- ``ivr``      IVR stepping (``ivr_start`` / ``ivr_next``)
- ``calendar`` business hours (``is_open``, ``next_open``)
- ``overflow`` overflow planning (``overflow_actions``)
- ``cli``      ``callcenter rules check|explain|schema|reload``

Nothing here does I/O except ``loader`` (reads the file) and ``cli``. Reference: docs/routing.md.
"""
