//! Background inputs to the reload writer that are not an operator: today
//! the file watcher (`FileWatcher`), which asks for a reload when the config
//! file or a file it names changes.
//! Invariant: everything here only sends `Command`s to the writer and waits
//! for their outcome; nothing here builds or swaps a snapshot.

mod watch;

pub use watch::{DEBOUNCE, FileWatcher};
