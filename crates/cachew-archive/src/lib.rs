//! `cachew-archive`: skeleton; see `docs/ARCHITECTURE.md` for the planned contents.
