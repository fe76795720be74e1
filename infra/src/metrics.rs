//! Process metrics in the Prometheus text format. A handful of counters and gauges does not need
//! a metrics framework: a map behind a mutex, rendered on scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

#[derive(Default)]
struct Families {
    /// name -> (kind, help, series: labels -> value)
    families: BTreeMap<&'static str, (&'static str, &'static str, BTreeMap<String, f64>)>,
}

/// The process-wide registry.
pub struct Metrics {
    inner: Mutex<Families>,
}

fn labels_key(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    pub fn global() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| Metrics {
            inner: Mutex::new(Families::default()),
        })
    }

    fn with(&self, f: impl FnOnce(&mut Families)) {
        // A poisoned lock only means a panic elsewhere mid-update; the numbers are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) {
        self.add(name, help, labels, 1.0);
    }

    pub fn add(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: f64) {
        let key = labels_key(labels);
        self.with(|m| {
            let family = m
                .families
                .entry(name)
                .or_insert(("counter", help, BTreeMap::new()));
            *family.2.entry(key).or_insert(0.0) += by;
        });
    }

    pub fn set(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        let key = labels_key(labels);
        self.with(|m| {
            let family = m
                .families
                .entry(name)
                .or_insert(("gauge", help, BTreeMap::new()));
            family.2.insert(key, value);
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            for (name, (kind, help, series)) in &m.families {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for (labels, value) in series {
                    let _ = writeln!(out, "{name}{labels} {value}");
                }
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges_in_text_format() {
        let m = Metrics {
            inner: Mutex::new(Families::default()),
        };
        m.inc("x_total", "Things.", &[("kind", "a\"b")]);
        m.inc("x_total", "Things.", &[("kind", "a\"b")]);
        m.set("y", "Level.", &[], 3.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE y gauge\ny 3\n"), "{text}");
    }
}
