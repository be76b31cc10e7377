"""Feed adapters: async iterators of tick columns (see :mod:`feeds.base`)."""
