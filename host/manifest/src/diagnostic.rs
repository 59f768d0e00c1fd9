//! Located diagnostics: `file:line:col: error: message`, the source line with a caret, and a
//! `help:` line.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;

/// How bad a problem is. Errors make [`crate::parse`] fail; warnings are reported beside a
/// manifest that still loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest cannot be used as written.
    Error,
    /// Probably a mistake, but the manifest works.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, with its place in the manifest.
///
/// `Display` renders it as
/// ```text
/// cairn.toml:12:1: error: unknown key `conection` in [collectors.entra]
///    12 | conection = "contoso"
///       | ^^^^^^^^^
///   help: did you mean `connection`?
/// ```
/// Secret values never appear in a diagnostic: the quoted source line has the values of secret
/// fields replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The manifest's name as given to [`crate::parse`] (for [`crate::load`], the path).
    pub file: String,
    /// 1-based line; 0 when the problem has no place in the file (e.g. the file is unreadable).
    pub line: usize,
    /// 1-based column, in characters; 0 when `line` is 0.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The source line (secret values masked), for the caret display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// The 1-based character column of the caret in `source_line` (it differs from `column`
    /// when a secret before it on the line was masked).
    #[serde(skip)]
    pub source_column: usize,
    /// How many characters from `source_column` to underline.
    #[serde(skip)]
    pub underline: usize,
}

impl Diagnostic {
    /// A diagnostic with no place in a file (`file: error: message`).
    pub fn unlocated(
        severity: Severity,
        file: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
            help,
            source_line: None,
            source_column: 0,
            underline: 0,
        }
    }

    /// Is this an error?
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The one-line form: `file:line:col: severity: message` (no source line, no help).
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: {}: {}", self.file, self.severity, self.message)
        } else {
            format!(
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.severity, self.message
            )
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(src) = &self.source_line {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            write!(f, "\n   {num} | {src}")?;
            let lead: String = src
                .chars()
                .take(self.source_column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n   {pad} | {lead}{}",
                "^".repeat(self.underline.max(1))
            )?;
        }
        if let Some(help) = &self.help {
            for (i, line) in help.lines().enumerate() {
                if i == 0 {
                    write!(f, "\n  help: {line}")?;
                } else {
                    write!(f, "\n        {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// Every problem found in a manifest, sorted by place. The `Err` of [`crate::parse`] and
/// [`crate::load`] (it then holds at least one error, and any warnings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Is there at least one error?
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None at all?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by file, line and column (stable), dropping exact duplicates.
    pub fn sort(&mut self) {
        sort_diagnostics(&mut self.0);
    }
}

pub(crate) fn sort_diagnostics(v: &mut Vec<Diagnostic>) {
    v.sort_by(|a, b| (a.file.as_str(), a.line, a.column).cmp(&(b.file.as_str(), b.line, b.column)));
    v.dedup();
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let e = self.errors().count();
        let w = self.0.len() - e;
        let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
        write!(f, "{}, {}", plural(e, "error"), plural(w, "warning"))
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A line/column place in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// The manifest text, for turning byte spans into located diagnostics. Secret values are
/// masked out of quoted source lines.
pub(crate) struct Source {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
    /// Byte spans of inline secret values (masked in quoted lines).
    pub masks: Vec<Range<usize>>,
}

impl fmt::Debug for Source {
    // Never the text: it may hold inline secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub fn new(name: &str, text: &str) -> Source {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Source {
            name: name.to_string(),
            text: text.to_string(),
            line_starts,
            masks: Vec::new(),
        }
    }

    fn clamp(&self, mut at: usize) -> usize {
        at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// 0-based line index of a byte offset.
    fn line_index(&self, at: usize) -> usize {
        match self.line_starts.binary_search(&at) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    fn line_range(&self, idx: usize) -> Range<usize> {
        let start = self.line_starts[idx];
        let mut end = self
            .line_starts
            .get(idx + 1)
            .map(|e| e - 1)
            .unwrap_or(self.text.len());
        if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        start..end
    }

    pub fn location(&self, at: usize) -> Location {
        let at = self.clamp(at);
        let idx = self.line_index(at);
        let start = self.line_starts[idx];
        Location {
            line: idx + 1,
            column: self.text[start..at].chars().count() + 1,
        }
    }

    /// The cuts (line-relative byte ranges) to mask in line `idx`.
    fn cuts(&self, idx: usize, extra_masks: &[Range<usize>]) -> Vec<Range<usize>> {
        let r = self.line_range(idx);
        let line = &self.text[r.clone()];
        // Spans of secrets known by position.
        let mut cuts: Vec<Range<usize>> = self
            .masks
            .iter()
            .chain(extra_masks)
            .filter(|m| m.start < r.end && m.end > r.start)
            .map(|m| m.start.max(r.start) - r.start..m.end.min(r.end) - r.start)
            .collect();
        // Lines that look like `secret_key = value` (e.g. a value the parser could not read).
        if let Some(eq) = line.find('=') {
            let key = line[..eq]
                .trim()
                .rsplit('.')
                .next()
                .unwrap_or("")
                .trim_matches(|c| c == '"' || c == '\'' || c == ' ');
            if looks_secret_key(key) {
                let value = line[eq + 1..].trim_start();
                let refd = ["env:", "file:", "\"env:", "\"file:", "'env:", "'file:"]
                    .iter()
                    .any(|p| value.starts_with(p));
                if !refd && !value.is_empty() {
                    cuts.push(line.len() - value.len()..line.len());
                }
            }
        }
        // age identities (private keys), wherever they were pasted.
        let mut from = 0;
        while let Some(i) = line[from..].find("AGE-SECRET-KEY-") {
            let start = from + i;
            let len = line[start..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .unwrap_or(line.len() - start);
            cuts.push(start..start + len);
            from = start + len;
        }
        cuts.retain(|c| c.end > c.start);
        cuts.sort_by_key(|c| c.start);
        cuts
    }

    /// Line `idx` with secret values replaced by `***`, and the 1-based character columns
    /// in it of the line-relative byte offsets `a` (a start) and `b` (an end).
    fn masked_line(
        &self,
        idx: usize,
        extra_masks: &[Range<usize>],
        a: usize,
        b: usize,
    ) -> (String, usize, usize) {
        let line = &self.text[self.line_range(idx)];
        // Segments of the line: (range, masked).
        let mut segs: Vec<(Range<usize>, bool)> = Vec::new();
        let mut pos = 0;
        for c in self.cuts(idx, extra_masks) {
            if c.start >= pos {
                segs.push((pos..c.start, false));
                segs.push((c.clone(), true));
                pos = c.end;
            } else if c.end > pos {
                if let Some(last) = segs.last_mut() {
                    last.0.end = c.end;
                }
                pos = c.end;
            }
        }
        segs.push((pos..line.len(), false));
        let mut out = String::new();
        let (mut ca, mut cb) = (None, None);
        for (seg, masked) in segs {
            let col0 = out.chars().count();
            let col = |o: usize, is_end: bool| {
                if masked {
                    col0 + if is_end { 3 } else { 0 }
                } else {
                    col0 + line[seg.start..o].chars().count()
                }
            };
            if ca.is_none() && seg.contains(&a) {
                ca = Some(col(a, false));
            }
            if cb.is_none() && seg.contains(&b) && b > seg.start {
                cb = Some(col(b, true));
            } else if cb.is_none() && b == seg.start && !masked {
                cb = Some(col0);
            }
            if masked {
                out.push_str("***");
            } else {
                out.push_str(&line[seg]);
            }
        }
        let total = out.chars().count();
        let ca = ca.unwrap_or(total);
        let cb = cb.unwrap_or(total).max(ca);
        (out, ca + 1, cb + 1)
    }

    /// A diagnostic for the byte span `span`.
    pub fn diag(
        &self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
        extra_masks: &[Range<usize>],
    ) -> Diagnostic {
        let start = self.clamp(span.start);
        let end = self.clamp(span.end.max(start));
        let loc = self.location(start);
        let idx = loc.line - 1;
        let r = self.line_range(idx);
        let (a, b) = (start - r.start, end.min(r.end).max(start) - r.start);
        let (source_line, ca, cb) = self.masked_line(idx, extra_masks, a, b);
        Diagnostic {
            severity,
            file: self.name.clone(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
            help,
            source_line: Some(source_line),
            source_column: ca,
            underline: (cb - ca).max(1),
        }
    }
}

/// Keys whose values are secrets wherever they appear (used to mask quoted lines the parser
/// could not read, as well as to decide which store options are secret references).
pub(crate) fn looks_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    crate::model::STORE_SECRET_KEYS
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        || k == "client_secret"
        || k == "certificate_key"
        || k.contains("password")
        || k.contains("secret")
}

/// Shared handle on a manifest's source, kept by [`crate::Manifest`] for later checks.
pub(crate) type SourceRef = Arc<Source>;
