"""dlnlab: train diagonal linear networks and hold them against the saddle-to-saddle theory."""
