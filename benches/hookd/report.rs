//! The bench's figures: each with its baseline from the same run, the ratio to it, and its target; printed as
//! a table and written as JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// What a figure must reach to pass.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// value / baseline ≥ x
    RatioAtLeast(f64),
    /// value / baseline ≤ x
    RatioAtMost(f64),
    /// value ≥ x
    AtLeast(f64),
    /// value < x
    Below(f64),
    /// value ≤ x
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    /// `None`: the phase that measures it failed or was not run (see `note`).
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The name and value of what this figure is compared with.
    pub baseline: Option<(String, f64)>,
    pub target: Option<Target>,
    pub note: String,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            name: name.into(),
            value: Some(value),
            unit,
            baseline: None,
            target: None,
            note: String::new(),
        }
    }

    /// Compared with `value` of `name` (a baseline that failed gives no ratio).
    pub fn against(mut self, name: impl Into<String>, value: Option<f64>) -> Figure {
        if let Some(value) = value {
            self.baseline = Some((name.into(), value));
        }
        self
    }

    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        let (_, baseline) = self.baseline.as_ref()?;
        let value = self.value?;
        (*baseline != 0.0).then(|| value / baseline)
    }

    /// `None` when there is no target, or a ratio target without a baseline (its phase was not run);
    /// `Some(false)` when the figure itself could not be measured.
    pub fn pass(&self) -> Option<bool> {
        let target = self.target?;
        let Some(value) = self.value else {
            return Some(false);
        };
        Some(match target {
            Target::RatioAtLeast(x) => self.ratio()? >= x,
            Target::RatioAtMost(x) => self.ratio()? <= x,
            Target::AtLeast(x) => value >= x,
            Target::Below(x) => value < x,
            Target::AtMost(x) => value <= x,
        })
    }
}

/// Every figure of a run, and the phases that failed.
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub errors: Vec<(String, String)>,
}

impl Report {
    pub fn push(&mut self, figure: Figure) {
        self.figures.push(figure);
    }

    pub fn fail(&mut self, phase: &str, error: &anyhow::Error) {
        self.errors.push((phase.to_owned(), format!("{error:#}")));
    }

    /// The value of the figure named `name`, when it was measured.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value)
    }

    pub fn table(&self) -> String {
        let rows: Vec<[String; 6]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.name.clone(),
                    f.value.map_or("error".into(), |v| show(v, f.unit)),
                    f.baseline.as_ref().map_or("-".into(), |(name, v)| {
                        format!("{} ({name})", show(*v, f.unit))
                    }),
                    f.ratio().map_or("-".into(), |r| format!("{r:.2}")),
                    f.target.map_or("-".into(), |t| target_text(t, f.unit)),
                    match f.pass() {
                        None => "-".into(),
                        Some(true) => "pass".into(),
                        Some(false) => "FAIL".into(),
                    },
                ]
            })
            .collect();
        let header = ["figure", "value", "baseline", "ratio", "target", "result"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<w$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&header.map(String::from));
        for row in &rows {
            line(row);
        }
        for f in self.figures.iter().filter(|f| !f.note.is_empty()) {
            let _ = writeln!(out, "  {}: {}", f.name, f.note);
        }
        for (phase, error) in &self.errors {
            let _ = writeln!(out, "ERROR in phase {phase}: {error}");
        }
        out
    }

    pub fn json(&self, run: Value) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "figure": f.name,
                    "value": f.value,
                    "unit": f.unit,
                    "baseline_name": f.baseline.as_ref().map(|b| &b.0),
                    "baseline": f.baseline.as_ref().map(|b| b.1),
                    "ratio": f.ratio(),
                    "target": f.target.map(|t| target_text(t, f.unit)),
                    "pass": f.pass(),
                    "note": f.note,
                })
            })
            .collect();
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(phase, error)| json!({"phase": phase, "error": error}))
            .collect();
        json!({"run": run, "figures": figures, "errors": errors})
    }
}

fn show(value: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{value:.0}/s"),
        "ms" => format!("{value:.2} ms"),
        "s" => format!("{value:.2} s"),
        "MiB" => format!("{value:.1} MiB"),
        _ => format!("{value:.2} {unit}"),
    }
}

fn target_text(target: Target, unit: &str) -> String {
    match target {
        Target::RatioAtLeast(x) => format!("ratio >= {x}"),
        Target::RatioAtMost(x) => format!("ratio <= {x}"),
        Target::AtLeast(x) => format!(">= {}", show(x, unit)),
        Target::Below(x) => format!("< {}", show(x, unit)),
        Target::AtMost(x) => format!("<= {}", show(x, unit)),
    }
}
