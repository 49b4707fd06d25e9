"""Start-up error fixtures: a non-callable attribute."""

not_callable = 42
