"""One module per tab; each exposes ``build(studio)`` that creates its components and wires events."""
