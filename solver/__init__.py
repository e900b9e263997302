"""Pure planning: data in, plan out. No sockets, no HTTP, no database, no wall clock."""
