//! Export: the selected items of a snapshot as plain JSON files, one per object, in a tree
//! like EntraExporter's: `<out>/<collector>/<kind>/<name>__<id>.json`, binary parts beside as
//! `<name>__<id>.<part>`, and `<out>/export.json` describing the export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::{RestoreContext, Selector};

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub dir: PathBuf,
    pub items: usize,
    pub parts: usize,
    pub bytes: u64,
    /// Items per `collector/kind`.
    pub per_kind: BTreeMap<String, usize>,
}

/// Writes the selected items of every collector under `out` (created if needed; existing files
/// with the same names are overwritten).
pub fn export(
    ctx: &RestoreContext,
    selector: &Selector,
    out: &Path,
) -> anyhow::Result<ExportReport> {
    let mut report = ExportReport {
        dir: out.to_path_buf(),
        ..Default::default()
    };
    for part in &ctx.parts {
        part.view.probe()?;
        for e in part
            .view
            .entries()
            .filter(|e| selector.matches(&e.kind, &e.id, &e.name))
        {
            let dir = out.join(safe(&part.collector)).join(safe(&e.kind));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let stem = if e.name.is_empty() {
                safe(&e.id)
            } else {
                format!("{}__{}", safe(&e.name), safe(&e.id))
            };
            let mut body = part.view.body(e)?;
            if !e.parts.is_empty() {
                body["@cairn.parts"] = json!(e
                    .parts
                    .iter()
                    .map(|p| json!({"name": p.name, "size": p.size,
                                    "file": format!("{stem}.{}", safe(&p.name))}))
                    .collect::<Vec<_>>());
            }
            let text = serde_json::to_vec_pretty(&body)?;
            report.bytes += text.len() as u64;
            let file = dir.join(format!("{stem}.json"));
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            for p in &e.parts {
                let bytes = part.view.part(p)?;
                report.bytes += bytes.len() as u64;
                let file = dir.join(format!("{stem}.{}", safe(&p.name)));
                std::fs::write(&file, bytes)
                    .with_context(|| format!("writing {}", file.display()))?;
                report.parts += 1;
            }
            report.items += 1;
            *report
                .per_kind
                .entry(format!("{}/{}", part.collector, e.kind))
                .or_default() += 1;
        }
    }
    let meta = json!({"snapshot": ctx.snapshot_id.to_string(), "snapshotTime": ctx.snapshot.time,
                      "exported": super::now(), "selector": selector, "items": report.items,
                      "parts": report.parts, "perKind": report.per_kind});
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("export.json"), serde_json::to_vec_pretty(&meta)?)
        .with_context(|| format!("writing {}", out.join("export.json").display()))?;
    Ok(report)
}

/// A file-name-safe form: letters, digits, `.`, `-`, `_`, `@`, space kept; others become `_`;
/// at most 80 characters; never empty, never `.`/`..`.
pub fn safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ' ') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let trimmed = out.trim().to_string();
    out = trimmed;
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = format!("_{out}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn safe_names() {
        assert_eq!(safe("Adele Vance"), "Adele Vance");
        assert_eq!(safe("g1/u2"), "g1_u2");
        assert_eq!(safe(".."), "_..");
        assert_eq!(safe(""), "_");
        assert_eq!(safe("a:b*c?"), "a_b_c_");
        assert_eq!(safe(&"x".repeat(200)).len(), 80);
    }
}
