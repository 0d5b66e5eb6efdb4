"""User-facing errors: the CLI prints these as one clear line, never as a traceback."""


class MedtuneError(Exception):
    """An error the user can fix (bad file, bad row, bad config key, missing model).

    The message names the file and line, the field or the config key, and what to do instead.
    """
