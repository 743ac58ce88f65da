"""The heads that ship with the package, each a self-contained ``head_*`` folder found by discovery."""
