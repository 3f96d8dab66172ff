"""`triton-bundle doctor`: what this machine can do, and what to run next."""
