//! Cachew wire protocol types.
