//! Recording a boot profile (`viver.vfield.record`): a [`BlockSource`] in front of the
//! real one that notes, for a while after the attach, each chunk the kernel reads for the
//! first time. The order is what a V-FIELD node of the same image prefetches next time
//! (see [`crate::image::profile`]).
//!
//! The recording is handed to `save` every few seconds while it grows, and once more when
//! the window closes, so a boot cut short still leaves what it read up to then.

use super::{BlockSource, SourceError};
use crate::image::chunks::Layout;
use crate::image::profile::Recorded;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a growing recording is saved.
const SAVE_EVERY: Duration = Duration::from_secs(5);

pub struct Recorder {
    inner: Arc<dyn BlockSource>,
    layout: Layout,
    image: String,
    started: Instant,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    seen: Vec<bool>,
    order: Vec<u32>,
    /// Chunks in `order` at the last save.
    saved: usize,
}

impl Recorder {
    /// Records reads of `inner` (image `image`, cut as `layout`) for `window` from now, and
    /// starts the thread that hands the recording to `save`.
    pub fn start(
        inner: Arc<dyn BlockSource>,
        layout: Layout,
        image: &str,
        window: Duration,
        save: impl Fn(&Recorded) -> Result<(), String> + Send + 'static,
    ) -> Result<Arc<Recorder>, String> {
        let count = usize::try_from(layout.count()).map_err(|_| "too many chunks to record".to_string())?;
        let recorder = Arc::new(Recorder {
            inner,
            layout,
            image: image.to_string(),
            started: Instant::now(),
            window,
            state: Mutex::new(State { seen: vec![false; count], order: Vec::new(), saved: 0 }),
        });
        let saver = recorder.clone();
        std::thread::Builder::new().name("profile-record".into()).spawn(move || saver.save_loop(save)).map_err(|e| e.to_string())?;
        Ok(recorder)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The recording so far.
    pub fn recorded(&self) -> Recorded {
        Recorded {
            image: self.image.clone(),
            chunk_size: self.layout.chunk,
            seconds: self.window.as_secs(),
            chunks: self.lock().order.clone(),
        }
    }

    fn note(&self, offset: u64, len: usize) {
        if self.started.elapsed() >= self.window {
            return;
        }
        let mut st = self.lock();
        for index in self.layout.covering(offset, offset.saturating_add(len as u64)) {
            if let Some(seen) = st.seen.get_mut(index as usize) {
                if !*seen {
                    *seen = true;
                    st.order.push(index as u32);
                }
            }
        }
    }

    /// Saves every [`SAVE_EVERY`] while the recording grows, and at the window's end.
    fn save_loop(&self, save: impl Fn(&Recorded) -> Result<(), String>) {
        let end = self.started + self.window;
        loop {
            std::thread::sleep(SAVE_EVERY.min(end.saturating_duration_since(Instant::now())));
            let last = Instant::now() >= end;
            let grown = {
                let mut st = self.lock();
                let grown = st.saved != st.order.len();
                st.saved = st.order.len();
                grown
            };
            if grown || last {
                let recorded = self.recorded();
                match save(&recorded) {
                    Ok(()) if last => log::info!(
                        "boot profile: {} chunks read in the first {} s, recorded for `viver-kit profile`",
                        recorded.chunks.len(),
                        recorded.seconds
                    ),
                    Ok(()) => {}
                    Err(e) => log::warn!("boot profile: cannot save the recording: {e}"),
                }
            }
            if last {
                return;
            }
        }
    }
}

impl BlockSource for Recorder {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.note(offset, buf.len());
        self.inner.read_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::super::MemSource;
    use super::*;

    #[test]
    fn first_reads_are_recorded_in_order_once_each_and_saved_at_the_end() {
        let source = Arc::new(MemSource::new(vec![7; 10 * 1024]));
        let saves = Arc::new(Mutex::new(Vec::new()));
        let sink = saves.clone();
        let layout = Layout { size: 10 * 1024, chunk: 1024 };
        let recorder = Recorder::start(source, layout, "00112233aabbccdd", Duration::from_millis(300), move |r| {
            sink.lock().unwrap().push(r.clone());
            Ok(())
        })
        .unwrap();
        let mut buf = vec![0; 1500];
        recorder.read_at(5 * 1024, &mut buf).unwrap(); // chunks 5, 6
        assert_eq!(buf, vec![7; 1500], "reads pass through");
        recorder.read_at(0, &mut buf[..10]).unwrap(); // chunk 0
        recorder.read_at(6 * 1024 + 10, &mut buf[..10]).unwrap(); // 6 again: not twice
        recorder.read_at(9 * 1024, &mut buf[..1024]).unwrap(); // the last chunk
        std::thread::sleep(Duration::from_millis(500));
        recorder.read_at(2 * 1024, &mut buf[..10]).unwrap(); // past the window
        let saves = saves.lock().unwrap();
        let last = saves.last().expect("saved at the window's end");
        assert_eq!(last.chunks, [5, 6, 0, 9]);
        assert_eq!((last.image.as_str(), last.chunk_size), ("00112233aabbccdd", 1024));
        assert_eq!(recorder.recorded().chunks, [5, 6, 0, 9], "nothing after the window");
    }
}
