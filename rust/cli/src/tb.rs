//! TensorBoard event files through `tensorboard-rs`, made safe to use from a training loop:
//! the crate panics on I/O errors, so every call is caught, and after the first failure the
//! writer turns itself off with one warning instead of stopping training.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use tensorboard_rs::summary_writer::SummaryWriter;

pub struct Board {
    writer: Option<SummaryWriter>,
}

impl Board {
    /// One writer per run folder (two writers started in the same second in one folder would
    /// overwrite each other's file).
    pub fn new(dir: &Path) -> Board {
        let writer = catch_unwind(|| SummaryWriter::new(dir)).ok();
        if writer.is_none() {
            eprintln!("warning: cannot write TensorBoard events to {}", dir.display());
        }
        Board { writer }
    }

    fn call(&mut self, f: impl FnOnce(&mut SummaryWriter)) {
        if let Some(w) = self.writer.as_mut() {
            if catch_unwind(AssertUnwindSafe(|| f(w))).is_err() {
                eprintln!("warning: writing TensorBoard events failed; no more events this run");
                self.writer = None;
            }
        }
    }

    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) {
        self.call(|w| {
            for (tag, v) in values {
                if v.is_finite() {
                    w.add_scalar(tag, *v as f32, step as usize);
                }
            }
            w.flush();
        });
    }
}
