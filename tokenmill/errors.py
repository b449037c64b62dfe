"""Errors a user can fix. The CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input, path, flag or config: the message says how to fix it."""


class ConfigError(UserError):
    """A config field has a value that is not allowed.

    The message starts with the dotted field name, e.g.
    ``etl.clean.min_words: must be an integer >= 0, got 'ten'``.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)
