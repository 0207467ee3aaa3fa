"""Qt-free core: specs, blocks, networks, training, inference. Never imports Qt."""
