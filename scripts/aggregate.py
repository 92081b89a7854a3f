"""Aggregate a sweep's summary.json files into one table and one figure: see dlnlab/aggregate.py."""

from dlnlab.aggregate import main

if __name__ == "__main__":
    main()
