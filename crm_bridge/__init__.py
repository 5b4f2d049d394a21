"""Screen-pop bridge: caller -> customer, value tier, loyalty and history, pushed to the
agent whose phone rings."""
