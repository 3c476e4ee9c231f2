"""``python -m engine data ...`` (being written: this placeholder registers nothing yet)."""


def register(sub) -> None:
    return None
