"""Post-call NPS survey: the pure core (``core``: prompts, digit parsing, NPS arithmetic) and
the shell (``service``: drives the caller after the agent hung up, stores the response)."""
