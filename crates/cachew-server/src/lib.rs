//! `cachew-server`: skeleton; see `docs/ARCHITECTURE.md` for the planned contents.
