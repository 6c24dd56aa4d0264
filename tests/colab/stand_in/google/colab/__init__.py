"""A stand-in for Colab's own module, for tests: its presence in sys.modules is how the install cell knows."""
