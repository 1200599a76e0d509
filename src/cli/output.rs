//! Printers for engine events: progress bars on a terminal (one line per host with its current
//! task), plain timestamped lines otherwise (CI, pipes), or JSON lines with `--json`. Then the
//! recap and the `total:` line. Lines are written through `report`, the one printer.

use std::collections::BTreeMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Recap, Reporter};
use crate::ops;
use crate::plan::Status;

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Progress bars (a terminal).
    Bars,
    /// Timestamped lines.
    Plain,
    /// JSON lines on stdout.
    Json,
}

impl Style {
    /// Bars on an interactive terminal outside CI, plain lines otherwise, JSON when asked.
    pub fn detect(json: bool) -> Self {
        if json {
            Style::Json
        } else if super::report::stderr_is_terminal()
            && std::env::var_os("CI").is_none()
            && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false)
        {
            Style::Bars
        } else {
            Style::Plain
        }
    }
}

/// The reporter the CLI hands to the engine.
pub struct Printer {
    style: Style,
    verbose: bool,
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Printer {
    /// A printer of `style`.
    pub fn new(style: Style, verbose: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if style == Style::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self {
            style,
            verbose,
            multi,
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn line(&self, s: String) {
        match self.style {
            Style::Bars => {
                let _ = self.multi.println(s);
            }
            _ => {
                super::report::info(format!("{} {s}", now()));
            }
        }
    }

    fn bar(&self, host: &str) -> Option<ProgressBar> {
        if self.style != Style::Bars {
            return None;
        }
        let mut bars = self.bars.lock().ok()?;
        Some(
            bars.entry(host.to_string())
                .or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(host.to_string());
                    b.enable_steady_tick(std::time::Duration::from_millis(120));
                    b
                })
                .clone(),
        )
    }

    /// Clears the bars before the recap (a later run starts new ones).
    pub fn finish(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for b in bars.values() {
                b.finish_and_clear();
            }
            bars.clear();
        }
        let _ = self.multi.clear();
    }
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

impl Reporter for Printer {
    fn event(&self, e: &Event) {
        if self.style == Style::Json {
            if let Ok(s) = serde_json::to_string(e) {
                super::report::out(s);
            }
            return;
        }
        match e {
            Event::PlayStart { play, hosts } => self.line(format!("PLAY {play} [{}]", hosts.join(", "))),
            Event::TaskStart { host, task } => {
                if let Some(b) = self.bar(host) {
                    b.set_message(task.clone());
                }
            }
            Event::TaskDone {
                host,
                task,
                status,
                summary,
                diff,
                ..
            } => {
                let word = match status {
                    Status::Ok => "ok",
                    Status::Changed => "changed",
                    Status::Skipped => "skipped",
                    Status::Failed => "failed",
                };
                let show = self.verbose || *status == Status::Changed || self.style == Style::Plain;
                if show {
                    self.line(format!("{host:<12} {word:<8} {task}: {summary}"));
                }
                if let Some(d) = diff {
                    self.line(d.trim_end().to_string());
                }
            }
            Event::Command { host, cmd } => self.line(format!("{host:<12} $ {cmd}")),
            Event::HostFailed {
                host,
                play,
                task,
                error,
            } => {
                if let Some(b) = self.bar(host) {
                    b.finish_with_message("FAILED");
                }
                self.line(format!("{host:<12} FAILED   {play} › {task}:\n{}", indent(error)));
            }
            Event::PlayDone { .. } => {}
        }
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Prints the recap (and per-play timings when asked) and the `total:` line.
pub fn recap(style: Style, r: &Recap, timings: bool) {
    if style == Style::Json {
        if let Ok(s) = serde_json::to_string(&serde_json::json!({ "event": "recap", "recap": r, "total": r.total() })) {
            super::report::out(s);
        }
        return;
    }
    let mut lines = vec![format!(
        "\nRECAP{}",
        if r.check {
            " (check mode: nothing was changed)"
        } else {
            ""
        }
    )];
    for (host, c) in &r.hosts {
        let state = if c.unreachable { " UNREACHABLE" } else { "" };
        lines.push(format!(
            "{host:<12} ok={:<3} changed={:<3} failed={:<2} skipped={:<3} round-trips={}{state}",
            c.ok, c.changed, c.failed, c.skipped, c.round_trips
        ));
    }
    if timings {
        lines.push("\nTIMINGS".to_string());
        for (play, secs) in &r.plays {
            lines.push(format!("{secs:>8.2}s  {play}"));
        }
        lines.push(format!("{:>8.2}s  total", r.elapsed));
    }
    if r.interrupted {
        lines.push("interrupted: stopped between tasks; re-run to converge".to_string());
    }
    super::report::info(lines.join("\n"));
    let t = r.total();
    super::report::out(format!("total: ok={} changed={} failed={}", t.ok, t.changed, t.failed));
}

/// The CLI's [`ops::Reporter`]: engine events through the [`Printer`], information and
/// errors through `report`, and the recap after each engine run.
pub struct CliReporter {
    printer: Printer,
    style: Style,
    timings: bool,
}

impl CliReporter {
    /// A reporter for `--json`, `-v` and `--timings` as given.
    pub fn shared(json: bool, verbose: bool, timings: bool) -> std::sync::Arc<dyn ops::Reporter> {
        let style = Style::detect(json);
        std::sync::Arc::new(Self {
            printer: Printer::new(style, verbose),
            style,
            timings,
        })
    }
}

impl Reporter for CliReporter {
    fn event(&self, e: &Event) {
        self.printer.event(e);
    }
}

impl ops::Reporter for CliReporter {
    fn info(&self, line: &str) {
        super::report::info(line);
    }

    fn error(&self, message: &dyn std::fmt::Display) {
        super::report::error(message);
    }

    fn recap(&self, r: &Recap) {
        self.printer.finish();
        recap(self.style, r, self.timings);
    }
}
