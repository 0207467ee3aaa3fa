"""Sub-commands that train and run networks: train, denoise, eval, export, watch."""


def add_commands(sub) -> None:
    pass
