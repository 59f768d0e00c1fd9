//! Selection: which snapshot items a restore is about, from the command line's selectors.

use serde::{Deserialize, Serialize};

use super::view::SnapshotView;

/// What the operator selected. Filters of different types combine with AND, values of one
/// filter with OR; no `kinds`, `ids` or `names` selects the whole snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Item kinds (`user`, `group`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Item ids, bare or as `kind/id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Globs on display names (`*` any run, `?` one character; case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Attribute-level restore: only these attributes of the selected objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// Only objects absent from the live tenant (`--deleted-since`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_missing: bool,
}

impl Selector {
    /// True if nothing narrows the selection (the whole snapshot).
    pub fn is_whole(&self) -> bool {
        self.kinds.is_empty() && self.ids.is_empty() && self.names.is_empty()
    }

    /// Whether an entry is selected.
    pub fn matches(&self, kind: &str, id: &str, name: &str) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind) {
            return false;
        }
        if !self.ids.is_empty()
            && !self.ids.iter().any(|s| match s.split_once('/') {
                // Membership ids contain `/` themselves: compare whole first.
                _ if s == id => true,
                Some((k, i)) => k == kind && i == id,
                None => false,
            })
        {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|g| glob_match(g, name)) {
            return false;
        }
        true
    }
}

/// One selected item of a collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedItem {
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
}

/// The items of `view` the selector picks, in (kind, id) order.
pub fn resolve(view: &SnapshotView, selector: &Selector) -> Vec<SelectedItem> {
    view.entries()
        .filter(|e| selector.matches(&e.kind, &e.id, &e.name))
        .map(|e| SelectedItem {
            kind: e.kind.clone(),
            id: e.id.clone(),
            attributes: selector.attributes.clone(),
        })
        .collect()
}

/// Case-insensitive glob: `*` matches any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("Adele*", "AdeleV@contoso.com"));
        assert!(glob_match("*@contoso.com", "adelev@CONTOSO.com"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*x*y*", "aaxbbyc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("Adele", "AdeleV"));
        assert!(!glob_match("*x*y", "aaxbbyc"));
    }

    #[test]
    fn selector_filters_combine() {
        let s = Selector {
            kinds: vec!["user".into()],
            names: vec!["A*".into(), "B*".into()],
            ..Default::default()
        };
        assert!(s.matches("user", "1", "Alex"));
        assert!(s.matches("user", "2", "bob"));
        assert!(!s.matches("group", "3", "Admins"));
        assert!(!s.matches("user", "4", "Carol"));
        let ids = Selector {
            ids: vec!["user/1".into(), "g1/u2".into(), "7".into()],
            ..Default::default()
        };
        assert!(ids.matches("user", "1", ""));
        assert!(!ids.matches("group", "1", ""));
        assert!(ids.matches("groupMember", "g1/u2", ""));
        assert!(ids.matches("group", "7", ""));
        assert!(Selector::default().is_whole());
        assert!(!ids.is_whole());
    }
}
