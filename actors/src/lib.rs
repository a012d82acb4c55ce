//! The embeddable herd runtime.

pub mod task_book;
