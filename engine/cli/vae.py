"""``python -m engine vae ...`` (being written: this placeholder registers nothing yet)."""


def register(sub) -> None:
    return None
