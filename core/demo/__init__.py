"""The tiny random-weight twins of every family and companion: the offline demo, and what the tests run on."""
