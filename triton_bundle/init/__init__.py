"""`triton-bundle init`: write a commented, validated spec.yaml from a checkpoint and its data."""
