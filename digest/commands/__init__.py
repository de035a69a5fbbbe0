"""CLI edges, one module per area: parse options, call one service, print the result."""
