"""One module per CLI verb, each exposing `main(argv: list[str]) -> int`."""
