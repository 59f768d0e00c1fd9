//! Backup progress. On a terminal: a bar per running task (items, pages, throttled requests)
//! and an overall line with tasks done and the ETA, log lines printed above the bars. On a
//! pipe or in CI: no bars, the engine's plain log lines (planned, task finished, failures).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cairn_engine::backup::{ProgressEvent, ProgressHook};
use cairn_gateway::Gateway;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars being drawn, if any: log lines go above them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// The tracing writer: stderr, printed above the progress bars while they are shown.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Whether bars are drawn: stderr is a terminal and `CI` is not set.
pub fn bars_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

struct TaskBar {
    bar: ProgressBar,
    steps: u64,
    items: u64,
    removed: u64,
}

struct Bars {
    mp: MultiProgress,
    overall: ProgressBar,
    tasks: Mutex<HashMap<String, TaskBar>>,
    gateways: BTreeMap<String, Arc<Gateway>>,
}

impl Bars {
    fn throttled(&self, task: &str) -> u64 {
        self.gateways
            .values()
            .filter_map(|g| g.stats().tasks.get(task).map(|t| t.throttled))
            .sum()
    }

    fn message(t: &TaskBar, throttled: u64) -> String {
        let mut m = format!("{}, {}", count(t.items, "item"), count(t.steps, "page"));
        if t.removed > 0 {
            m.push_str(&format!(", {} removed", t.removed));
        }
        if throttled > 0 {
            m.push_str(&format!(", {throttled} throttled"));
        }
        m
    }

    fn event(&self, e: ProgressEvent<'_>) {
        match e {
            ProgressEvent::Planned { tasks, .. } => {
                self.overall.inc_length(tasks.len() as u64);
            }
            ProgressEvent::TaskStarted { task } => {
                let bar = self
                    .mp
                    .insert_before(&self.overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<40} {msg}")
                        .expect("template"),
                );
                bar.set_prefix(task.to_string());
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(120));
                self.tasks.lock().expect("bars").insert(
                    task.to_string(),
                    TaskBar {
                        bar,
                        steps: 0,
                        items: 0,
                        removed: 0,
                    },
                );
            }
            ProgressEvent::Step {
                task,
                steps,
                items,
                removed,
            } => {
                let throttled = self.throttled(task);
                if let Some(t) = self.tasks.lock().expect("bars").get_mut(task) {
                    t.steps = steps;
                    t.items = items;
                    t.removed = removed;
                    t.bar.set_message(Self::message(t, throttled));
                }
            }
            ProgressEvent::TaskFinished { task, stats } => {
                let t = self.tasks.lock().expect("bars").remove(task);
                if let Some(t) = &t {
                    t.bar.finish_and_clear();
                    self.mp.remove(&t.bar);
                }
                let line = match &stats.error {
                    Some(err) => format!("  ✗ {task:<40} FAILED: {err}"),
                    None => format!(
                        "  ✓ {task:<40} {}, {} removed, {:.1}s",
                        count(stats.items, "item"),
                        stats.removed,
                        stats.duration_secs
                    ),
                };
                let _ = self.mp.println(line);
                self.overall.inc(1);
            }
        }
    }

    /// Refreshes the throttle counts of running tasks (they change between steps).
    fn tick(&self) {
        let tasks = self.tasks.lock().expect("bars");
        for (name, t) in tasks.iter() {
            let throttled = self.throttled(name);
            if throttled > 0 {
                t.bar.set_message(Self::message(t, throttled));
            }
        }
    }
}

/// `1 item`, `2 items`.
fn count(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Shows progress bars for a run while it lives; clears them when dropped.
pub struct Display {
    bars: Arc<Bars>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Bars on stderr, if it is a terminal (see [`bars_wanted`]); `None` otherwise.
    pub fn start(gateways: &BTreeMap<String, Arc<Gateway>>) -> Option<Display> {
        if !bars_wanted() {
            return None;
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let overall = mp.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} tasks  {elapsed_precise} elapsed, ETA {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        let _ = BARS.set(mp.clone());
        let bars = Arc::new(Bars {
            mp,
            overall,
            tasks: Mutex::new(HashMap::new()),
            gateways: gateways.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let bars = bars.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    bars.tick();
                }
            })
        };
        Some(Display {
            bars,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The hook to give the backup run.
    pub fn hook(&self) -> ProgressHook {
        let bars = self.bars.clone();
        Arc::new(move |e| bars.event(e))
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        for (_, t) in self.bars.tasks.lock().expect("bars").drain() {
            t.bar.finish_and_clear();
        }
        self.bars.overall.finish_and_clear();
        let _ = self.bars.mp.clear();
    }
}
