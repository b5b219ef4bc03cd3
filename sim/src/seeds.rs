//! Seeds derived from a run's seed: every random choice of a run comes from it.

/// The seed of node `i`'s agent in its incarnation `inc` (its jitter and run ID), in a run of
/// `seed`: the simulator's and the checker's, so a counterexample replays with seed 0.
pub(crate) fn agent_seed(seed: u64, i: usize, inc: u64) -> u64 {
    mix(seed, i as u64, inc)
}

/// Derives an independent seed from `seed` and two numbers (splitmix64 over the mix, so
/// nearby inputs give unrelated seeds).
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
