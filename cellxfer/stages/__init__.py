"""Built-in plugins: each module implements hooks of :mod:`cellxfer.hookspecs`, exactly as a
third-party plugin would. Command bodies parse options, call the library and print."""
