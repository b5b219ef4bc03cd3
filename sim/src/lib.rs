//! Deterministic simulation testbed for leasehold (work in progress).
